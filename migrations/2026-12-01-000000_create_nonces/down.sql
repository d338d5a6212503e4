DROP TABLE nonce_fence;
DROP TABLE nonces;
