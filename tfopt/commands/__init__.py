"""The `tfopt` commands, one module per command (or small group: optimize, recipes and demo);
`tfopt.cli` imports each only when its command is named. Shared here: `options.py` (the options
several commands take) and `wrap.py` (the wrapper every command body runs in: JSON mode, quiet
stdout, one-line errors naming the command's own flags)."""
