"""The `serviceorders` command line: database set-up, the catalog, the order lifecycle,
the processes, audit, history and Kafka.

`main` (the console script `serviceorders.cli:main`) is the click group of cli/main.py;
each command group lives in its own module and registers itself on it when imported, which
happens when one of its commands runs or the commands are listed (`main` is a lazy group:
COMMAND_MODULES in cli/main.py names each command's module; issue 21, start-up):
orders.py (`order ...`), demo.py, database.py (`db`, `projections`, `hub`), catalog.py,
processes.py (`api`, `serve`, `project`: the process runtime is runtime/serve.py),
audit.py, history.py, kafka.py (`consume`, `dlq`, `publish-sample`), inventory.py
(`inventory show`; `inventory import` in inventory_import.py).
"""

from serviceorders.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
