FROM python:3.11
MAINTAINER Data Team <data@example.com>
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
RUN pip install gunicorn
COPY . .
EXPOSE 5000
CMD gunicorn -b 0.0.0.0:5000 app:app
