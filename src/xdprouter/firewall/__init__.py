"""xdprouter's firewall: rules.py (a rule), compiler.py (rules to tables), tables.py (the maps), api.py (Firewall)."""

from .api import Firewall
from .rules import Rule, RuleCounters, SetInfo, parse_prefix_lines

__all__ = ["Firewall", "Rule", "RuleCounters", "SetInfo", "parse_prefix_lines"]
