"""`ptc` whose takeover claim writes the Service only: the negative control of test_fencing.py.

Run as ``python -m tests.e2e.unclaimed_ptc run ...``. The claim of every other object the rollout
writes (the Deployments' and the history ConfigMap's annotation) is skipped, as before issue 12's
last part: a deposed leader's scale of a Deployment the successor has not written since lands.
"""

from __future__ import annotations

import sys

from controller.core.config.model import Rollout
from controller.ops.cli import main
from controller.shell.kube import DeploymentInfo, Kube
from controller.shell.reconciler import claim


async def _service_only(kube: Kube, spec: Rollout, target: str, mark: str) -> list[DeploymentInfo]:
    return []


claim.claim_objects = _service_only

if __name__ == "__main__":
    sys.exit(main())
