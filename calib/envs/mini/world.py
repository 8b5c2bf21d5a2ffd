"""The world airline-mini is set in: its calendar, airports, cabins, fees and the names its users get.

These are facts the database builder, the task builder, the policy text and the tests share, so they
live apart from each of them.
"""

from __future__ import annotations

import datetime as dt

DEFAULT_SEED = 0
NOW = dt.datetime(2024, 5, 15, 15, 0, 0)
TODAY = NOW.date()
DATES = [(dt.date(2024, 5, 10) + dt.timedelta(days=i)).isoformat() for i in range(21)]  # 05-10 .. 05-30
FUTURE = [d for d in DATES if "2024-05-17" <= d <= "2024-05-26"]  # task trips; later dates leave room to move

AIRPORTS = {
    "BOS": "Boston", "DEN": "Denver", "JFK": "New York", "LAX": "Los Angeles",
    "MIA": "Miami", "ORD": "Chicago", "SEA": "Seattle", "SFO": "San Francisco",
}
CABINS = ("basic_economy", "economy", "business")
# Free checked bags per passenger (our policy's table).
FREE_BAGS = {
    "regular": {"basic_economy": 0, "economy": 1, "business": 2},
    "silver": {"basic_economy": 1, "economy": 2, "business": 2},
    "gold": {"basic_economy": 2, "economy": 2, "business": 3},
}
BAG_FEE, INSURANCE_FEE, COMPENSATION_PER_PASSENGER = 50, 30, 100

FIRST = ["Ada", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Ximena",
         "Yusuf", "Zoe", "Arjun", "Bea", "Cyril", "Dmitri", "Esme", "Femi"]
LAST = ["Abbott", "Bauer", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quispe", "Rossi", "Sato", "Tanaka",
        "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang"]
STREETS = ["Maple Street", "Harbor Road", "Cedar Lane", "Hillside Avenue", "Station Road", "Orchard Way"]



def money(x: float) -> int:
    """A price in whole currency units, as every amount in the database is."""
    return round(x)
