"""The runner's Hydra plugins. Hydra instantiates a sweeper only from the ``hydra_plugins``
namespace package, so the class Hydra sees lives here; the code is in ``runner.search``."""
