"""peerprune: attention-head pruning with automatic peer distillation.

A reconstruction of Li et al., IJCAI 2023. The modules, one idea each:
glue (data), metrics, models, heads (surgery), train (loop), teacher (dense teacher),
results (JSON records), report (tables), profiles (run sizes).
"""
__version__ = "0.1.0"
