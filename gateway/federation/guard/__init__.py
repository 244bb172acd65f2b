"""Authorization of forwarded calls: every object a request names is tied to a grant before it is sent.

Each route of the route table has a rule (rules.py; a test walks them all), and each rule one small
function (table.py) in the module of its resource: experiments, runs, logged_models, models, traces,
artifacts, workspace. The rule says which objects the request touches and the level it needs on them;
anything the guard cannot tie to an object is refused, ids nested in bodies included (nested.py).
Searches are narrowed before they are sent (never filtered afterwards), so pages are full, page tokens
work, and nothing hidden is ever counted. The guard asks the store where objects live through `Lookups`
and the database about owners and registered models through `Ownership` (ports.py).
"""

from gateway.federation.guard.lookups import StoreLookups
from gateway.federation.guard.ports import Lookups, Ownership
from gateway.federation.guard.request import Plan
from gateway.federation.guard.rules import Rule, rule_for
from gateway.federation.guard.service import Guard

__all__ = ["Guard", "Lookups", "Ownership", "Plan", "Rule", "StoreLookups", "rule_for"]
