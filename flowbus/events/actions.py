"""Actions of automations (Prefect's ``prefect.events.actions``), as flowbus's
automation schema defines them (:mod:`events.automation_actions`).

flowbus's forms differ from Prefect's in places: ``ChangeFlowRunState(state=...)``
takes a state name (``"Cancelled"``), and a deployment is named, not given by id.
"""

from events.automation_actions import (
    CallWebhook,
    CancelFlowRun,
    ChangeFlowRunState,
    DoNothing,
    EmitEvent,
    PauseAutomation,
    PauseDeployment,
    ResumeAutomation,
    ResumeDeployment,
    RetryFlowRun,
    RunDeployment,
    SendNotification,
)

__all__ = [
    "CallWebhook",
    "CancelFlowRun",
    "ChangeFlowRunState",
    "DoNothing",
    "EmitEvent",
    "PauseAutomation",
    "PauseDeployment",
    "ResumeAutomation",
    "ResumeDeployment",
    "RetryFlowRun",
    "RunDeployment",
    "SendNotification",
]
