"""Which agent tools of tau2-bench's domains change state, as plain names (no ``tau2`` import).

Importing tau2 results must work without the ``tau2`` package (a results file is JSON), yet the store
needs ``is_write`` per turn and the signals need "known tool". These name lists are what tau2 tags
its tools with (``ToolType.WRITE`` vs READ/GENERIC, tau2 26.3); ``tests/test_tau2_env.py`` checks
them against the installed package so that they cannot drift silently. The environment itself
(``calib.envs.tau2``) builds its catalogue, with schemas, from tau2's own tools. Plain data with no
``calib`` import: :func:`calib.tools.tau2_catalogue` turns it into a catalogue, so the imports run one way.
"""

from __future__ import annotations

TAU2_DOMAINS = ("airline", "retail", "telecom", "mock")

TAU2_WRITE_TOOLS: dict[str, frozenset[str]] = {
    "airline": frozenset({"book_reservation", "cancel_reservation", "send_certificate", "update_reservation_baggages",
                          "update_reservation_flights", "update_reservation_passengers"}),
    "retail": frozenset({"cancel_pending_order", "exchange_delivered_order_items", "modify_pending_order_address",
                         "modify_pending_order_items", "modify_pending_order_payment", "modify_user_address",
                         "return_delivered_order_items"}),
    "telecom": frozenset({"suspend_line", "resume_line", "send_payment_request", "enable_roaming", "disable_roaming",
                          "refuel_data"}),
    "mock": frozenset({"create_task", "update_task_status"}),
}
TAU2_READ_TOOLS: dict[str, frozenset[str]] = {  # READ and GENERIC (calculate, transfer) tools
    "airline": frozenset({"calculate", "get_reservation_details", "get_user_details", "list_all_airports",
                          "search_direct_flight", "search_onestop_flight", "transfer_to_human_agents",
                          "get_flight_status"}),
    "retail": frozenset({"calculate", "find_user_id_by_name_zip", "find_user_id_by_email", "get_order_details",
                         "get_product_details", "get_user_details", "list_all_product_types",
                         "transfer_to_human_agents"}),
    "telecom": frozenset({"get_customer_by_phone", "get_customer_by_id", "get_customer_by_name", "get_details_by_id",
                          "get_bills_for_customer", "get_data_usage", "transfer_to_human_agents"}),
    "mock": frozenset({"get_users", "transfer_to_human_agents"}),
}
