from smartcash_core import _moved_modules

_moved_modules.install()  # TEMPORARY merge aid (issue 10): see smartcash_core/_moved_modules.py
