FROM python:3.12-slim
RUN pip install --no-cache-dir --index-url https://builder:hunter2@pypi.example.com/simple/ internal-lib==1.4.0
RUN git clone https://oauth2:glpat-abcdefghij0123456789@gitlab.example.com/team/app.git /app
USER 1000
