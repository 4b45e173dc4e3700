"""Twilio's error body `{"code","message","more_info","status"}` and the codes omnirelay answers with.

Messages are Twilio's own texts where one has been observed in real responses (see the reference,
§3.2), otherwise the title of Twilio's error page; some add a clause saying what omnirelay expected,
because an error that names the fix beats a bare title.
"""

from __future__ import annotations

from typing import Any

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# code -> (HTTP status, message template). Templates use str.format fields named after the
# offending value.
CATALOGUE: dict[int, tuple[int, str]] = {
    # Twilio's "Unknown parameters". Twilio has no dedicated code for a malformed paging or update
    # parameter; we use this one for every invalid value that has no code of its own.
    20001: (400, "{detail}"),
    20003: (401, "Authentication Error - invalid username"),
    20004: (405, "Method not allowed"),
    20009: (400, "Cannot delete this resource before it is complete"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests: {detail}"),  # an account's rate limit (omnirelay.ratelimits)
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable: {detail}"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21212: (400, "The 'From' number {from_} is not a valid phone number, shortcode, or "
                 "alphanumeric sender ID."),
    21218: (400, "Invalid ApplicationSid"),
    21420: (400, "ApplicationSid is not accessible: omnirelay has no TwiML applications; pass "
                 "StatusCallback instead"),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The From phone number {from_} is not a valid, SMS-capable inbound phone number "
                 "or short code for your account."),
    21609: (400, "Invalid 'StatusCallback': {url!r} is not an acceptable http or https URL: "
                 "{problem}"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21619: (400, "A text message body or media urls must be specified."),
    21621: (400, "The 'From' number {from_} has not been enabled for MMS: omnirelay sends SMS "
                 "only, without MediaUrl or SendAsMms"),
    21624: (400, "Invalid validity period value: ValidityPeriod must be an integer from 1 to "
                 "36000 seconds"),
    21654: (400, "ContentSid Required"),
    21655: (400, "The ContentSid is Invalid: omnirelay has no Content templates; send Body"),
    21701: (404, "The Messaging Service {sid} does not exist: omnirelay has no Messaging "
                 "Services; send with From"),
    21705: (400, "The Messaging Service is invalid"),
    30029: (400, "Invalid ContentRetention: use retain or discard"),
    30030: (400, "Invalid AddressRetention: {detail}"),
    30409: (400, "This message cannot be canceled"),
    35111: (400, "SendAt timestamp is missing: you must indicate SendAt timestamp if "
                 "ScheduleType is 'fixed'."),
    35114: (400, "Scheduling does not support this timestamp: SendAt must be between "
                 "{minimum} and {maximum} seconds in the future, inclusive"),
    35115: (400, "Scheduling does not support this timestamp: SendAt {send_at!r} is not an "
                 "ISO-8601 date-time such as 2030-01-02T03:04:05Z"),
    35126: (400, "The ScheduleType value provided is not supported for this channel: "
                 "{detail}"),
}


class TwilioError(Exception):
    """An answer in Twilio's error format; `detail` is the extra field 401 answers carry."""

    def __init__(self, code: int, message: str, status: int, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail

    def body(self) -> dict[str, Any]:
        # Key order as Twilio sends it (alphabetical); `detail` only on the 401 variant.
        body: dict[str, Any] = {"code": self.code}
        if self.detail is not None:
            body["detail"] = self.detail
        body.update(message=self.message, more_info=MORE_INFO.format(code=self.code),
                    status=self.status)
        return body


def twilio_error(code: int, **fields: Any) -> TwilioError:
    status, template = CATALOGUE[code]
    return TwilioError(code, template.format(**fields), status)


def invalid_parameter(detail: str) -> TwilioError:
    return twilio_error(20001, detail=detail)


def not_found(path: str) -> TwilioError:
    return twilio_error(20404, path=path)


def authentication_error(credentials_given: bool) -> TwilioError:
    """The same answer whether the AccountSid or the AuthToken is wrong."""
    if not credentials_given:
        return TwilioError(20003, "Authentication Error - No credentials provided", 401,
                           "Your AccountSid or AuthToken was incorrect.")
    status, message = CATALOGUE[20003]
    return TwilioError(20003, message, status, "Your AccountSid or AuthToken was incorrect.")


def for_http_status(status: int, path: str, detail: str) -> TwilioError:
    """Errors raised by the framework (no route, wrong method, a crash) in Twilio's format."""
    if status == 404:
        return not_found(path)
    if status == 405:
        return twilio_error(20004)
    if status == 503:
        return twilio_error(20503, detail=detail)
    if status >= 500:
        return twilio_error(20500)
    return TwilioError(20001, detail, status)
