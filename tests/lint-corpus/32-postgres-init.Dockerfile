FROM postgres:16
ENV POSTGRES_PASSWORD=postgres
ENV POSTGRES_PASSWORD_FILE=/run/secrets/pg
COPY init.sql /docker-entrypoint-initdb.d/
EXPOSE 5432
