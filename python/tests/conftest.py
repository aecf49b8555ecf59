import os
import sys

# Run from the source tree with the build tree's package: PYTHONPATH=build/python (CTest sets
# it); this fallback finds build/python next to the sources for a bare `pytest python/tests`.
here = os.path.dirname(os.path.abspath(__file__))
fallback = os.path.join(here, "..", "..", "build", "python")
if not any(os.path.isdir(os.path.join(p, "kiln")) and os.path.exists(os.path.join(p, "kiln", "__init__.py"))
           and p != os.path.join(here, "..") for p in sys.path if p):
    sys.path.insert(0, os.path.abspath(fallback))
