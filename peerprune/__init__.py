"""peerprune: attention-head pruning with automatic peer distillation.

A reconstruction of Li et al., IJCAI 2023. The modules, one idea each:
glue (data), metrics, models, heads (surgery), train (loop), teacher (dense teacher),
anatomy (head statistics), locator (gates under the budget), peers (merge), losses,
baselines and smp (other head choices), selectors (every method's head choice, one shape),
pipeline (the method's six steps), prune (a run's options and bookkeeping), choices
(cached head choices), results and migrations (JSON records), report and figures,
profiles (run sizes).
"""
__version__ = "0.1.0"
