"""Templates of `tx new-task` and `tx new-launcher` (package data, rendered by tx.core.scaffold).

`task/` holds what every task package gets, `task-<kind>/` what one kind adds, `launcher/` the
launcher package. Only `*.jinja` files are rendered; names may hold `{{module}}`-style expressions.
"""
