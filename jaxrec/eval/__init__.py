"""Evaluation: per-user metrics, full ranking, and the protocol.

`protocol.Protocol` is the only way a result is measured: it ranks with
`ranking.rank` and scores with `metrics.per_user`.
"""
