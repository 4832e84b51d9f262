// The two delivery channels of the notification worker: an HTTP request
// (rest-hook) and a mail through an SMTP relay. Synchronous for the caller,
// every step bounded by one deadline. Internal to the interactions library.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "espace/fhir/status.h"

namespace espace::interactions::notify {

using fhir::Status;

struct HttpUrl {
  std::string host, port, target;  // target: path and query, "/" at least
};
// http://host[:port][/path]; https and anything else are refused (Invalid).
Status parse_http_url(const std::string& url, HttpUrl* out);

struct HttpDelivery {
  std::string method;                 // "POST" or "PUT"
  std::string url;
  std::vector<std::string> headers;   // "Name: value" (Subscription.channel.header)
  std::string content_type;           // with a body
  std::string body;
};
// Sends the request; Ok on a 2xx answer, an error naming the status otherwise.
Status http_deliver(const HttpDelivery& d, std::chrono::milliseconds timeout);

struct Mail {
  std::string from, to;   // bare addresses: local@domain
  std::string subject, text;
};
// A mail address we accept from a Subscription endpoint: no spaces, controls
// or angle brackets (they would let the address rewrite the SMTP dialogue).
bool is_plain_mail_address(const std::string& address);
// EHLO, MAIL FROM, RCPT TO, DATA, QUIT with the relay at host:port.
Status smtp_send(const std::string& host, uint16_t port, const Mail& mail, std::chrono::milliseconds timeout);

}  // namespace espace::interactions::notify
