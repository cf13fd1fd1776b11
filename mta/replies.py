"""Named SMTP replies (steps 3 and 4): one place for every code labmail itself sends.

Each carries an RFC 3463 enhanced status code (RFC 2034), so ENHANCEDSTATUSCODES can be
advertised; aiosmtpd's own replies get a default one added in ``mta.smtp.server``.
"""

SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
QUEUED = "250 2.0.0 OK: queued as {queue_id}"

UNKNOWN_USER = "550 5.1.1 <{address}>: no such user here"
RELAY_DENIED = "550 5.7.1 <{address}>: relaying denied"
ROUTED_ADDRESS = "550 5.7.1 <{address}>: source routes and %, ! forms are not accepted"
BAD_ADDRESS = "501 5.1.3 <{address}>: bad address syntax"
BAD_SENDER_SYNTAX = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 Bad recipient address syntax"
NOT_UTF8_ADDRESS = "553 5.6.7 Address is not valid UTF-8 (RFC 6531 3.3)"
NON_ASCII_ADDRESS = "553 5.6.7 <{address}>: non-ASCII address needs SMTPUTF8"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
MAIL_LOOP = "554 5.4.6 Too many Received headers: mail loop"
DATA_LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
DATA_TOO_MUCH = "552 5.3.4 Message size exceeds fixed maximum message size"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, try again later"
SHUTTING_DOWN = "421 4.3.2 {hostname} shutting down, try again later"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS already active"
TIMEOUT = "421 4.4.2 {hostname} timeout exceeded, closing connection"
AUTH_NOT_OFFERED = "502 5.5.1 AUTH is not offered on this port"
TOO_MANY_CONNECTIONS = "421 4.7.0 {hostname} too many connections, try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 {hostname} too many connections from your address"
TOO_MANY_JUNK_COMMANDS = "421 4.7.0 {hostname} too many commands without mail, closing"

AUTH_REQUIRED = "530 5.7.0 Authentication required"
SENDER_NOT_OWNED = "553 5.7.1 <{address}>: sender address is not yours"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"

# Default enhanced codes for replies that come without one (aiosmtpd's own).
DEFAULT_ENHANCED = {
    "211": "2.0.0", "214": "2.0.0", "220": "2.0.0", "221": "2.0.0", "235": "2.7.0",
    "250": "2.0.0", "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "432": "4.7.12", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1",
    "454": "4.7.0", "455": "4.5.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "521": "5.3.2", "530": "5.7.0", "534": "5.7.9", "535": "5.7.8", "538": "5.7.11",
    "550": "5.0.0", "551": "5.1.6", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}

# Submission (step 3, RFC 6409 and RFC 4954).
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_BAD_ENCODING = "501 5.5.2 Cannot decode the authentication data"
TOO_MANY_AUTH_FAILURES = "421 4.7.0 {hostname} too many failed authentication attempts, closing"
