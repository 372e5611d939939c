FROM node:latest
WORKDIR /usr/src/app
COPY package*.json ./
RUN npm install
RUN npm install -g pm2 nodemon
COPY . .
EXPOSE 3000
CMD ["pm2-runtime", "server.js"]
