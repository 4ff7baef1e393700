"""The learner's maths: pure functions of scores, tensors and candidates (pairs, groups, losses). They
import nothing of ours but each other, so the core's algorithm registry (flowpo/algorithms.py) names them."""
