FROM python:3.12
ENV PIP_NO_CACHE_DIR=1
RUN pip install poetry==1.8.3
WORKDIR /app
COPY pyproject.toml poetry.lock ./
RUN poetry config virtualenvs.create false && poetry install --no-root
RUN pip install --upgrade pip
COPY . .
CMD ["python", "-m", "app"]
