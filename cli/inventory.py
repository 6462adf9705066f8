"""`serviceorders inventory`: the services of the inventory (issue 20, docs/inventory.md).

`inventory show ID [--as-of T]` lives here; `inventory import FILE` in
cli/inventory_import.py (both register on the `inventory` group).
"""

from __future__ import annotations

from serviceorders.cli.main import main


@main.group()
def inventory() -> None:
    """The services of the inventory (TMF638): show one, import those that existed before."""
