// The notification worker (notify.h): takes due outbox events, finds the
// active Subscriptions whose criteria the document matches, delivers, and
// settles each event in the outbox.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "../common.h"
#include "espace/fhir/json.h"
#include "espace/interactions/notify.h"
#include "notify_channels.h"

namespace espace::interactions {

namespace {

constexpr int kEventsPerPass = 100;
// Bounds on what a Subscription may ask of the worker.
constexpr size_t kMaxSubscriptionHeaders = 20;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The short, content-free mail of the email channel: no title, type, author
// or patient detail leaves the server by mail.
constexpr const char* kMailSubject = "A new document in your health record";
constexpr const char* kMailText =
    "A new document was added to your health record.\r\n"
    "Sign in to your record to read it.\r\n";

struct Subscription {
  std::string id;
  int64_t version = 0;
  std::string json;
  std::string criteria, channel_type, endpoint, payload;
  std::vector<std::string> headers;
};

std::string string_member(const rapidjson::Value& object, const char* name) {
  if (!object.IsObject()) return {};
  auto it = object.FindMember(name);
  if (it == object.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

bool load_subscription(const storage::ResourceVersion& v, Subscription* out) {
  rapidjson::Document doc;
  doc.Parse(v.json.data(), v.json.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  // The list of active Subscriptions is a pass old: one switched off or set
  // to error since (by an earlier event of the pass) is skipped here.
  if (string_member(doc, "status") != "active") return false;
  out->id = v.id;
  out->version = v.version;
  out->json = v.json;
  out->criteria = string_member(doc, "criteria");
  auto channel = doc.FindMember("channel");
  if (channel == doc.MemberEnd() || !channel->value.IsObject()) return false;
  out->channel_type = string_member(channel->value, "type");
  out->endpoint = string_member(channel->value, "endpoint");
  out->payload = string_member(channel->value, "payload");
  auto headers = channel->value.FindMember("header");
  if (headers != channel->value.MemberEnd() && headers->value.IsArray())
    for (const auto& h : headers->value.GetArray())
      if (h.IsString() && out->headers.size() < kMaxSubscriptionHeaders) out->headers.emplace_back(h.GetString());
  return true;
}

// Does the document match the Subscription's criteria ("Type?query")? Run
// as a search for the criteria plus _id, so the search engine decides.
Status criteria_match(const Services& services, const std::string& criteria, const std::string& type,
                      const std::string& id, bool* match) {
  *match = false;
  size_t q = criteria.find('?');
  std::string criteria_type = criteria.substr(0, q);
  if (criteria_type != type) return Status::ok();
  std::vector<std::pair<std::string, std::string>> params;
  if (q != std::string::npos && !split_query(std::string_view(criteria).substr(q + 1), &params))
    return Status::error(ErrorCategory::Invalid, "invalid", "malformed percent-encoding in the criteria");
  params.emplace_back("_id", id);
  std::vector<std::string> ids;
  if (Status s = resolve_criteria(services, type, params, &ids); !s) return s;
  *match = std::find(ids.begin(), ids.end(), id) != ids.end();
  return Status::ok();
}

Status deliver(const NotifyOptions& options, const Subscription& sub,
               const storage::ResourceVersion& document) {
  std::chrono::milliseconds timeout(options.io_timeout_ms);
  if (sub.channel_type == "rest-hook") {
    notify::HttpDelivery d;
    d.headers = sub.headers;
    if (sub.payload.empty()) {
      // No payload: a bare ping, the receiver fetches what it needs itself.
      d.method = "POST";
      d.url = sub.endpoint;
    } else if (sub.payload == "application/fhir+json" || sub.payload == "application/json") {
      // With a payload the endpoint is a service base, updated with the
      // resource (R4 subscription.html, rest-hook).
      d.method = "PUT";
      std::string base = sub.endpoint;
      while (!base.empty() && base.back() == '/') base.pop_back();
      d.url = base + "/" + document.type + "/" + document.id;
      d.content_type = "application/fhir+json";
      d.body = document.json;
    } else {
      return Status::error(ErrorCategory::Invalid, "not-supported",
                           "notification: payload " + sub.payload + " is not supported (application/fhir+json is)");
    }
    return notify::http_deliver(d, timeout);
  }
  if (sub.channel_type == "email") {
    const std::string scheme = "mailto:";
    if (sub.endpoint.rfind(scheme, 0) != 0)
      return Status::error(ErrorCategory::Invalid, "invalid", "notification: an email endpoint is a mailto: URI");
    notify::Mail mail;
    mail.from = options.smtp_from;
    mail.to = sub.endpoint.substr(scheme.size());
    mail.subject = kMailSubject;
    mail.text = kMailText;
    return notify::smtp_send(options.smtp_host, options.smtp_port, mail, timeout);
  }
  return Status::error(ErrorCategory::Invalid, "not-supported",
                       "notification: channel type " + sub.channel_type + " is not supported (rest-hook, email are)");
}

bool listed(const std::string& list, const std::string& item) {
  size_t at = 0;
  while ((at = list.find(item, at)) != std::string::npos) {
    bool starts = at == 0 || list[at - 1] == ' ';
    bool ends = at + item.size() == list.size() || list[at + item.size()] == ' ';
    if (starts && ends) return true;
    at += item.size();
  }
  return false;
}

// R4: a Subscription the server gave up on gets status "error" and the reason.
Status mark_subscription_error(const Services& services, const Subscription& sub, const std::string& reason) {
  rapidjson::Document doc;
  doc.Parse(sub.json.data(), sub.json.size());
  if (doc.HasParseError() || !doc.IsObject()) return Status::ok();
  auto& alloc = doc.GetAllocator();
  doc.RemoveMember("status");
  doc.RemoveMember("error");
  doc.AddMember("status", "error", alloc);
  rapidjson::Value text;
  text.SetString(reason.data(), static_cast<rapidjson::SizeType>(reason.size()), alloc);
  doc.AddMember("error", text, alloc);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  fhir::Node node;
  if (Status s = fhir::parse_json(*services.defs, std::string_view(buffer.GetString(), buffer.GetSize()), &node); !s)
    return s;
  WriteOp op;
  op.kind = WriteOp::Kind::Update;
  op.type = "Subscription";
  op.id = sub.id;
  op.method = "PUT";
  op.if_match = sub.version;  // a client's concurrent change wins; ours is dropped
  if (Status s = PreparedBody::prepare(node, sub.id, &op.body); !s) return s;
  op.index = index_entries(*services.defs, node);
  WriteOutcome outcome;
  return services.store->write([&](storage::WriteTxn& txn) { return apply_write(txn, op, &outcome); });
}

}  // namespace

NotificationWorker::NotificationWorker(const Services& services, NotifyOptions options)
    : services_(services), options_(std::move(options)) {}

NotificationWorker::~NotificationWorker() { stop(); }

void NotificationWorker::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { loop(); });
}

void NotificationWorker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NotificationWorker::loop() {
  pthread_setname_np(pthread_self(), "espace-notify");
  for (;;) {
    int settled = 0;
    Status s = run_once(&settled);
    if (!s) std::fprintf(stderr, "espace: notifications: %s\n", s.message().c_str());
    std::unique_lock lock(mutex_);
    if (stopping_) return;
    // A full page may mean more are due: go again at once.
    if (settled < kEventsPerPass || !s)
      wake_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms), [&] { return stopping_; });
    if (stopping_) return;
  }
}

Status NotificationWorker::run_once(int* settled) {
  *settled = 0;
  std::vector<storage::OutboxEvent> due;
  if (Status s = services_.store->due_outbox(now_us(), kEventsPerPass, &due); !s) return s;
  if (due.empty()) return Status::ok();
  // One search for the whole pass, not one per event: a busy server raises
  // an event for every document it files. A Subscription activated during
  // the pass is used from the next one.
  std::vector<std::string> subscription_ids;
  if (Status s = resolve_criteria(services_, "Subscription", "status=active", &subscription_ids); !s) return s;
  for (storage::OutboxEvent& event : due) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;  // the rest stays due for the next start
    }
    if (Status s = handle(event, subscription_ids); !s) return s;
    ++*settled;
  }
  return Status::ok();
}

Status NotificationWorker::handle(storage::OutboxEvent& event, const std::vector<std::string>& subscription_ids) {
  size_t slash = event.resource.find('/');
  std::string type = event.resource.substr(0, slash);
  std::string id = slash == std::string::npos ? std::string() : event.resource.substr(slash + 1);
  storage::ResourceVersion document;
  Status read = services_.store->read(type, id, &document);
  if (!read && read.category() != ErrorCategory::NotFound) return read;
  if (!read || document.deleted) {
    // Removed before it could be announced: nothing to tell anyone.
    event.state = storage::OutboxState::Delivered;
    event.last_error = "the resource no longer exists";
    return services_.store->settle_outbox(event);
  }

  std::vector<Subscription> failed_subs;
  std::string last_error;
  for (const std::string& sub_id : subscription_ids) {
    std::string target = "Subscription/" + sub_id;
    if (listed(event.delivered_to, target)) continue;
    storage::ResourceVersion v;
    if (!services_.store->read("Subscription", sub_id, &v) || v.deleted) continue;
    Subscription sub;
    if (!load_subscription(v, &sub)) continue;
    bool match = false;
    Status m = criteria_match(services_, sub.criteria, type, id, &match);
    Status d = m;
    if (m && !match) continue;
    if (m) d = deliver(options_, sub, document);
    if (d) {
      if (!event.delivered_to.empty()) event.delivered_to += ' ';
      event.delivered_to += target;
      continue;
    }
    last_error = target + ": " + d.message();
    failed_subs.push_back(std::move(sub));
  }

  if (failed_subs.empty()) {
    event.state = storage::OutboxState::Delivered;
    event.last_error.clear();
    return services_.store->settle_outbox(event);
  }
  ++event.attempts;
  event.last_error = last_error.substr(0, 1000);
  if (event.attempts >= options_.max_attempts) {
    event.state = storage::OutboxState::Failed;
    for (const Subscription& sub : failed_subs) {
      Status s = mark_subscription_error(
          services_, sub,
          "notification of " + event.resource + " failed after " + std::to_string(event.attempts) + " attempts: " +
              event.last_error);
      if (!s)
        std::fprintf(stderr, "espace: notifications: Subscription/%s not set to error: %s\n", sub.id.c_str(),
                     s.message().c_str());
    }
  } else {
    int shift = std::min(event.attempts - 1, 30);
    int64_t delay_ms = std::min<int64_t>(options_.retry_cap_ms, options_.retry_base_ms << shift);
    event.next_attempt_us = now_us() + delay_ms * 1000;
  }
  // Event ids and Subscription ids only: no patient data in the log.
  std::fprintf(stderr, "espace: notification event %lld: attempt %d failed (%s)%s\n",
               static_cast<long long>(event.id), event.attempts, event.last_error.c_str(),
               event.state == storage::OutboxState::Failed ? "; giving up" : "; will retry");
  return services_.store->settle_outbox(event);
}

}  // namespace espace::interactions
