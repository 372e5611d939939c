FROM php:8.2-apache
RUN apt-get update && apt-get install -y libpng-dev libjpeg-dev \
    && docker-php-ext-install gd mysqli
RUN a2enmod rewrite
COPY src/ /var/www/html/
RUN chown -R www-data:www-data /var/www/html && chmod -R 777 /var/www/html/uploads
EXPOSE 80
