"""``python -m sfx_cnn_veto_om``: the ``sfx-om-monitor`` launcher."""

import sys

from sfx_cnn_veto_om.launcher import main

sys.exit(main())
