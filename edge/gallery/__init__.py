"""The encrypted on-device gallery: enrolled templates, 1:N search, deletion, re-keying.

``store.Gallery`` is the entry point; ``protect`` holds the template-protection transform,
``sealed`` the pure record codec and device-key handling, ``backends`` the search backends.
"""
