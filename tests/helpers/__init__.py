"""Helpers shared by several test folders; tests of ``trainer/<pkg>/`` live in ``tests/<pkg>/``.

Code that more than one test folder uses lives here (``runs``, ``slow_batches``, ``servers``,
``evaluation``, ``export_fixtures``, ``validation_fixtures``, ``browser``; committed files in
``fixtures/``); a folder's own pytest fixtures stay in its ``conftest.py``.
``tests/test_configs.py`` and ``tests/test_layout.py`` test ``configs/`` and the package as a
whole, so they stay at the top.
Test modules are imported by their basename (no ``__init__.py`` in the test folders), so each
``test_*.py`` name must be unique across ``tests/``.
"""
