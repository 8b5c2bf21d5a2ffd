"""``python -m calib`` == the ``calib`` command."""

from calib.cli import main

if __name__ == "__main__":
    main()
