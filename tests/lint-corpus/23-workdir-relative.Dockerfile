FROM python:3.12-slim
COPY requirements.txt app/
WORKDIR app
RUN pip install --no-cache-dir -r requirements.txt
COPY a.py b.py /app
ENV APP_HOME=/app APP_LOG=$APP_HOME/log
USER 1000
CMD ["python", "a.py"]
