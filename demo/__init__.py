"""Sample agencies and the one-stop birth-support scenario, after Korea's Happy Birth service.

Four members of the ``DEMO`` instance (see :data:`AGENCIES`): a welfare agency that only calls
others, and three providers with their own gRPC services (contracts in ``demo/contracts``): a
population registry, a health-insurance agency and a tax office. :func:`serve_agency` starts a
provider's backend over in-memory sample records; :func:`run_scenario` plays the welfare agency's
side against a federation started by ``pintu up``.
"""

from demo._agencies import AGENCIES, Agency, AgencyBackend, AgencyService, serve_agency
from demo._scenario import ConsentDesk, run_scenario

__all__ = [
    "AGENCIES",
    "Agency",
    "AgencyBackend",
    "AgencyService",
    "ConsentDesk",
    "run_scenario",
    "serve_agency",
]
