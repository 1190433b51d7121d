"""A flow shipped in its own image, built FROM the flowbus image (see Dockerfile).

``com.example.order`` events start it; ``seconds`` makes it take a while, so a runner
can be stopped in the middle of it. ``retries=1``: a run whose runner died is taken
over by another runner and attempted once more.
"""

import time

from flowbus import flow, get_run_logger


@flow(retries=1, log_prints=True)
def process_order(order: str = "none", seconds: float = 0.0) -> str:
    """Process ``order``, taking ``seconds`` (at most 600)."""
    get_run_logger().info("processing order %s", order)
    time.sleep(max(0.0, min(seconds, 600.0)))
    message = f"order {order} processed"
    print(message)
    return message
