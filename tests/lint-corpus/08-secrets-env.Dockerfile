FROM node:20-alpine
ARG NPM_TOKEN
ENV DATABASE_PASSWORD=supersecret123
ENV AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
WORKDIR /app
COPY .npmrc package.json package-lock.json ./
RUN npm ci && rm -f .npmrc
COPY . .
USER node
CMD ["node", "index.js"]
