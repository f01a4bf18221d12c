"""Every SMTP reply the server sends, and the one table mapping domain errors to them.

Codes: RFC 5321 §4.2 (basic), RFC 3463 (enhanced status codes, advertised per RFC 2034),
RFC 4954 (AUTH), RFC 3207 (STARTTLS), RFC 3461 (DSN). Reply text is ASCII (RFC 5321 §4.2),
in French first — the people who read bounces are French professionals — then English.
"""

from __future__ import annotations

from mssante.domain import errors

# -- greetings and generic replies -------------------------------------------------------
OK = "250 2.0.0 OK"
BYE = "221 2.0.0 Au revoir / Bye"
READY_TLS = "220 2.0.0 Pret pour TLS / Ready to start TLS"
START_DATA = "354 Envoyez le message, terminez par <CRLF>.<CRLF> / End data with <CR><LF>.<CR><LF>"
VRFY = "252 2.5.0 Verification non proposee / Cannot VRFY user"
HELP = "214 2.0.0 Voir RFC 5321 / See RFC 5321"
SENDER_OK = "250 2.1.0 Expediteur accepte / Sender OK"
RECIPIENT_OK = "250 2.1.5 Destinataire accepte / Recipient OK"
AUTH_OK = "235 2.7.0 Authentification reussie / Authentication successful"

# -- protocol errors ---------------------------------------------------------------------
LINE_TOO_LONG = "500 5.5.6 Ligne trop longue / Line too long"
BAD_LINE_ENDING = "500 5.5.2 Les lignes se terminent par CRLF / Lines must end with CRLF"
BAD_SYNTAX = "500 5.5.2 Syntaxe incorrecte / Syntax error"
NON_ASCII_COMMAND = "500 5.5.2 Commande non ASCII / Command must be ASCII"
UNKNOWN_COMMAND = "502 5.5.1 Commande inconnue / Command not recognized"
TOO_MANY_ERRORS = "421 4.7.0 Trop d'erreurs, connexion fermee / Too many errors, closing"
SEND_HELO_FIRST = "503 5.5.1 Envoyez EHLO d'abord / Send EHLO first"
NESTED_MAIL = "503 5.5.1 Transaction deja ouverte / Nested MAIL command"
NEED_MAIL = "503 5.5.1 Envoyez MAIL d'abord / Need MAIL command"
NEED_RCPT = "503 5.5.1 Aucun destinataire valide / No valid recipients"
ALREADY_TLS = "503 5.5.1 TLS deja actif / TLS already active"
ALREADY_AUTH = "503 5.5.1 Deja authentifie / Already authenticated"
AUTH_NOT_HERE = "503 5.5.1 AUTH non proposee sur ce service / AUTH not offered here"
SYNTAX_MAIL = "501 5.5.4 Syntaxe : MAIL FROM:<adresse> / Syntax: MAIL FROM:<address>"
SYNTAX_RCPT = "501 5.5.4 Syntaxe : RCPT TO:<adresse> / Syntax: RCPT TO:<address>"
BAD_PARAMETER = "501 5.5.4 Parametre invalide : {} / Invalid parameter"
UNKNOWN_PARAMETER = "555 5.5.4 Parametre non reconnu : {} / Parameter not recognized"
BAD_SENDER_ADDRESS = "553 5.1.7 Adresse d'expediteur invalide / Bad sender address syntax"
BAD_RECIPIENT_ADDRESS = "501 5.1.3 Adresse de destinataire invalide / Bad recipient address syntax"
NULL_SENDER_REFUSED = "550 5.7.1 Expediteur vide refuse ici / Null sender not accepted here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Trop de destinataires / Too many recipients"
TLS_REQUIRED = "530 5.7.0 Executez STARTTLS d'abord / Must issue a STARTTLS command first"
TLS_NOT_AVAILABLE = "454 4.7.0 TLS indisponible / TLS not available"
CLIENT_CERT_REQUIRED = (
    "530 5.7.0 Certificat client de l'operateur requis / Operator client certificate required"
)
AUTH_REQUIRED = "530 5.7.0 Authentification requise / Authentication required"
AUTH_FAILED = "535 5.7.8 Identifiants invalides / Authentication credentials invalid"
AUTH_TEMPORARY = "454 4.7.0 Echec temporaire d'authentification / Temporary authentication failure"
TOKEN_EXPIRED = "421 4.7.0 Jeton expire, reconnectez-vous / Token expired, closing"  # noqa: S105
AUTH_ABORTED = "501 5.7.0 Authentification abandonnee / Authentication aborted"
AUTH_BAD_BASE64 = "501 5.5.2 Base64 invalide / Cannot decode base64"
AUTH_MECHANISM = "504 5.5.4 Mecanisme inconnu / Unrecognized authentication type"
AUTH_TOO_WEAK = "538 5.7.11 Chiffrement requis / Encryption required for this mechanism"
MESSAGE_TOO_BIG = "552 5.3.4 Message trop volumineux (maximum {} octets) / Message too big"
PATIENT_MESSAGE_TOO_BIG = (
    "552 5.3.4 Message trop volumineux pour une messagerie patient (maximum {} octets) /"
    " Message too big for a patient mailbox"
)
HEADER_TOO_BIG = "552 5.3.4 En-tetes trop volumineux / Message header section too big"
BARE_LF = "554 5.6.11 CR ou LF isole interdit (RFC 5321 2.3.8) / Bare CR or LF not allowed"
EIGHTBIT_NOT_DECLARED = "554 5.6.1 Contenu 8 bits non declare / 8-bit content not declared"
TOO_MANY_CONNECTIONS = "421 4.7.0 Trop de connexions, reessayez plus tard / Too many connections"
TIMEOUT = "421 4.4.2 Delai depasse, connexion fermee / Timeout, closing connection"
SHUTTING_DOWN = "421 4.3.2 Service en cours d'arret / Service shutting down"
TEMP_ERROR = "451 4.3.0 Erreur temporaire, reessayez plus tard (id {}) / Temporary error (id {})"
QUEUED = "250 2.0.0 Message accepte, file {} / Message accepted as {}"

# -- domain errors -> replies (the one table, DESIGN.md) ---------------------------------
DOMAIN_ERROR_REPLIES: dict[type[errors.DomainError], str] = {
    errors.NotInTrustSpace: (
        "550 5.7.1 Adresse hors de l'espace de confiance MSSante, message refuse"
        " / Recipient domain is outside the MSSante trust space"
    ),
    errors.UnknownMailbox: "550 5.1.1 Boite aux lettres inconnue / No such mailbox",
    errors.MailboxClosed: "550 5.2.1 Boite aux lettres fermee / Mailbox closed",
    errors.MailboxSuspended: (
        "450 4.2.1 Boite aux lettres suspendue, reessayez plus tard / Mailbox suspended"
    ),
    errors.NotAMember: (
        "550 5.7.1 Vous n'etes pas autorise a envoyer avec cette adresse"
        " / Not authorised to send as this address"
    ),
    errors.PeerNotAuthorised: (
        "550 5.7.1 Le certificat de l'operateur ne correspond pas a la liste blanche"
        " MSSante pour ce domaine / Operator certificate does not match the white list"
    ),
    errors.InvalidAddress: BAD_RECIPIENT_ADDRESS,
    errors.MessageTooLarge: "552 5.3.4 Message trop volumineux / Message too big",
    errors.AuthenticationFailed: AUTH_FAILED,
    errors.RelayDenied: "550 5.7.1 Domaine non heberge ici, relais refuse / Relay access denied",
}


def reply_for(error: errors.DomainError) -> str:
    for cls in type(error).__mro__:
        reply = DOMAIN_ERROR_REPLIES.get(cls)
        if reply is not None:
            return reply
    return "550 5.0.0 Refuse / Rejected"
