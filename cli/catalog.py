"""`serviceorders catalog`: the service specification catalog (needs no database)."""

from __future__ import annotations

import json

import click
from serviceorders.bootstrap import load_catalog
from serviceorders.cli.main import Context, main
from serviceorders.tmf.tmf633 import catalog_to_tmf633


@main.command()
@click.option("--json", "as_json", is_flag=True, help="TMF633 serviceSpecification JSON array.")
@click.pass_obj
def catalog(obj: Context, as_json: bool) -> None:
    """Show the service specification catalog (needs no database)."""
    cat = load_catalog(obj.config)
    if as_json:
        click.echo(json.dumps(catalog_to_tmf633(cat), indent=2))
        return
    for spec in cat.specifications:
        click.echo(f"{spec.id}  {spec.name} v{spec.version}")
        for char in spec.characteristics:
            need = "required" if char.required else "optional"
            choice = f" one of {list(char.allowed_values)}" if char.allowed_values else ""
            bounds = (
                f" {_number(char.minimum)}..{_number(char.maximum)}"
                if char.minimum is not None or char.maximum is not None
                else ""
            )
            default = f" default {char.default!r}" if char.default is not None else ""
            click.echo(f"    {char.name}: {char.value_type} {need}{choice}{bounds}{default}")


def _number(value: float | None) -> str:
    """A bound as written in a catalog: 10, not 10.0 (None: open)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)
