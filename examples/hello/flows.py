"""A flow that a CloudEvent starts: ``com.example.hello`` with ``{"name": ...}``."""

from flowbus import flow, get_run_logger


@flow(log_prints=True)
def greet(name: str = "world") -> str:
    """Say hello to ``name``."""
    get_run_logger().info("greeting %s", name)
    message = f"Hello, {name}!"
    print(message)
    return message


if __name__ == "__main__":
    greet()
