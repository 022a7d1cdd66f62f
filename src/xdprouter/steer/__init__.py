"""Steering rules: frames the firewall let through, matched with its
language, handed to another CPU's kernel stack (``cpu N``) or to the AF_XDP
socket of their ingress queue (``xsk``) before the router routes them.
rules.py (a rule and its data-plane form), api.py (``Steering``)."""

from .api import Steering
from .rules import SteerCounters, SteerRule

__all__ = ["Steering", "SteerCounters", "SteerRule"]
