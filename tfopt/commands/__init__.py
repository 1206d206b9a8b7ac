"""The larger `tfopt` commands, one module per pipeline job; `tfopt.cli` imports each only when
its command is named, so `tfopt --help` and the small commands load nothing of them."""
