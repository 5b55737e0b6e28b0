"""Offline fitting of the models dmx ships (not on the analysis path: nothing at run time imports it).

- :mod:`dmx.training.fit` fits the automatic detector's parameters from phantoms:
  ``python -m dmx.training.fit --out models/detector.npz`` (see ``models/README.md``).

The runtime detector (:mod:`dmx.detect`) only reads the fitted file; fitting needs the
phantom generator (:mod:`dmx.phantom`), which therefore stays off the runtime path.
"""
