"""The `serviceorders` command line: database set-up, the catalog, the order lifecycle,
the processes, audit, history and Kafka.

`main` (the console script `serviceorders.cli:main`) is the click group of cli/main.py;
each command group lives in its own module and registers itself on it when imported here:
orders.py (`order ...`), demo.py, database.py (`db`, `projections`, `hub`), catalog.py,
processes.py (`api`, `serve`, `project`: the process runtime is runtime/serve.py),
audit.py, history.py, kafka.py (`consume`, `dlq`, `publish-sample`), inventory.py
(`inventory show`; `inventory import` in inventory_import.py).
"""

from serviceorders.cli import (  # noqa: F401 (each registers its commands on `main`)
    audit,
    catalog,
    database,
    demo,
    history,
    inventory,
    inventory_import,
    kafka,
    orders,
    processes,
)
from serviceorders.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
