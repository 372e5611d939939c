// Verifies a Sigstore bundle (or a bare DSSE envelope, wrapped in a bundle here) with a
// public key, using sigstore-js (@sigstore/bundle to parse and validate, @sigstore/verify
// to verify). Key-based: no transparency log, no timestamps, no certificates.
// Usage: node verify-bundle.js BUNDLE_OR_ENVELOPE.json cosign.pub
// Prints the verified in-toto statement's subject digest and predicate type as JSON.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [file, keyFile] = process.argv.slice(2);
let json = JSON.parse(fs.readFileSync(file, 'utf8'));
const publicKey = crypto.createPublicKey(fs.readFileSync(keyFile));
const hint = 'kiln-test-key';
if (!json.mediaType) {
  json = {
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: json,
  };
}
const bundle = bundleFromJSON(json);
const keys = () => ({ publicKey, validFor: () => true });
const trust = toTrustMaterial({ certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] }, keys);
const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
verifier.verify(toSignedEntity(bundle));
const statement = JSON.parse(Buffer.from(json.dsseEnvelope.payload, 'base64').toString('utf8'));
console.log(JSON.stringify({ verified: true, subject: statement.subject, predicateType: statement.predicateType }));
