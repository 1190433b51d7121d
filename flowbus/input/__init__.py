"""Flow-run input (Prefect's ``prefect.input``): typed input a paused run waits for,
and input flows send each other.

Example::

    from flowbus import flow
    from flowbus.flow_runs import pause_flow_run
    from flowbus.input import RunInput

    class Approval(RunInput):
        approved: bool

    @flow
    def release():
        answer = pause_flow_run(wait_for_input=Approval, timeout=600)
        return answer.approved
"""

from flowbus.input.actions import (
    create_flow_run_input,
    create_flow_run_input_from_model,
    delete_flow_run_input,
    filter_flow_run_input,
    read_flow_run_input,
)
from flowbus.input.run_input import (
    AutomaticRunInput,
    GetInputHandler,
    Keyset,
    RunInput,
    RunInputMetadata,
    keyset_from_base_key,
    keyset_from_paused_state,
    receive_input,
    run_input_subclass_from_type,
    send_input,
)

__all__ = [
    "AutomaticRunInput",
    "GetInputHandler",
    "Keyset",
    "RunInput",
    "RunInputMetadata",
    "create_flow_run_input",
    "create_flow_run_input_from_model",
    "delete_flow_run_input",
    "filter_flow_run_input",
    "keyset_from_base_key",
    "keyset_from_paused_state",
    "read_flow_run_input",
    "receive_input",
    "run_input_subclass_from_type",
    "send_input",
]
