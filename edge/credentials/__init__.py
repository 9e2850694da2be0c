"""The non-biometric way through: card, PIN and QR credentials, authorised by the consent list."""
