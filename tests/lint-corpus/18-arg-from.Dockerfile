ARG BASE=python:3.12-slim
ARG VARIANT
FROM ${BASE} AS base
RUN pip install --no-cache-dir requests==2.32.3

FROM base AS test
RUN pip install --no-cache-dir pytest
COPY tests/ /tests/

FROM base
COPY app/ /app/
USER 10001
CMD ["python", "/app/main.py"]
