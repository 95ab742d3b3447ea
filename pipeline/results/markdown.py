"""Markdown tables and the number formats the bench summary and `report` share."""
from __future__ import annotations


def table(header, rows, align=None) -> list[str]:
    """Lines of a Markdown table. align: one of 'l'/'r' per column, or a string of them
    (default: the first column left, the others right)."""
    header = [str(h) for h in header]
    if align is None:
        align = "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} entries for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"row has {len(cells)} cells for {len(header)} columns: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def number(value, digits: int = 3) -> str:
    """'-' for None; thousands separators from 100 up; else `digits` significant digits."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def ratio(a, b) -> str:
    """a / b as '1.23x', or '-' when either is missing or b is zero."""
    return f"{a / b:.2f}x" if a is not None and b else "-"


def percent(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def spread(median, p10, p90) -> str:
    """'median [p10-p90]', or '-' without a median."""
    if median is None:
        return "-"
    return f"{number(median)} [{number(p10)}-{number(p90)}]"
