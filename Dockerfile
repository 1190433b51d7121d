# One image for every part of flowbus: `flowbus gateway`, `flowbus orchestrator`,
# `flowbus runner --pool NAME`. Users build their flow images FROM this one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLOWBUS_HOME=/var/lib/flowbus

RUN groupadd --gid 10001 flowbus \
 && useradd --uid 10001 --gid flowbus --create-home --home-dir /home/flowbus flowbus \
 && mkdir -p /var/lib/flowbus && chown flowbus:flowbus /var/lib/flowbus

WORKDIR /opt/flowbus
COPY pyproject.toml README.md ./
COPY events ./events
COPY flowbus ./flowbus
COPY gateway ./gateway
COPY orchestrator ./orchestrator
COPY runners ./runners
RUN pip install . && rm -rf /opt/flowbus/build

USER 10001:10001
WORKDIR /home/flowbus
EXPOSE 8080
ENTRYPOINT ["flowbus"]
CMD ["--help"]
