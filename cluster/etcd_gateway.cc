#include "cluster/etcd_gateway.h"

#include <httplib.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace seqkv::cluster {
namespace {

using Json = nlohmann::json;

std::string Base64(const std::string& bytes) {
  return absl::Base64Escape(bytes);
}

// The gateway writes int64 fields as JSON strings (proto3's JSON mapping);
// absent means 0.
int64_t Int64Field(const Json& object, const char* name) {
  if (!object.is_object() || !object.contains(name)) return 0;
  const Json& field = object[name];
  if (field.is_number_integer()) return field.get<int64_t>();
  int64_t value = 0;
  if (field.is_string() && absl::SimpleAtoi(field.get<std::string>(), &value))
    return value;
  return 0;
}

std::string BytesField(const Json& object, const char* name) {
  if (!object.is_object() || !object.contains(name) ||
      !object[name].is_string())
    return "";
  std::string bytes;
  if (!absl::Base64Unescape(object[name].get<std::string>(), &bytes)) return "";
  return bytes;
}

EtcdKeyValue KeyValueFromJson(const Json& kv) {
  return {BytesField(kv, "key"), BytesField(kv, "value"),
          Int64Field(kv, "mod_revision"), Int64Field(kv, "lease")};
}

absl::StatusOr<std::pair<std::string, int>> HostPort(
    const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(endpoint.substr(colon + 1), &port) || port <= 0 ||
      port > 65535)
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoint must be host:port, got '", endpoint, "'"));
  return std::make_pair(endpoint.substr(0, colon), port);
}

void SetTimeouts(httplib::Client& client, absl::Duration timeout) {
  const auto micros = absl::ToInt64Microseconds(timeout);
  client.set_connection_timeout(micros / 1000000, micros % 1000000);
  client.set_read_timeout(micros / 1000000, micros % 1000000);
  client.set_write_timeout(micros / 1000000, micros % 1000000);
}

}  // namespace

void WatchCancel::Cancel() {
  absl::MutexLock lock(&mutex_);
  cancelled_ = true;
  if (client_ != nullptr) client_->stop();
}

bool WatchCancel::cancelled() const {
  absl::MutexLock lock(&mutex_);
  return cancelled_;
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() =
          static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdGateway::EtcdGateway(std::vector<std::string> endpoints,
                         absl::Duration timeout)
    : endpoints_(std::move(endpoints)), timeout_(timeout) {}

absl::StatusOr<std::vector<std::string>> EtcdGateway::ParseEndpoints(
    const std::string& text) {
  std::vector<std::string> endpoints;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    std::string endpoint(piece);
    if (auto parsed = HostPort(endpoint); !parsed.ok()) return parsed.status();
    endpoints.push_back(std::move(endpoint));
  }
  if (endpoints.empty())
    return absl::InvalidArgumentError("no etcd endpoint given");
  return endpoints;
}

absl::StatusOr<std::string> EtcdGateway::Call(const std::string& path,
                                              const std::string& body) const {
  absl::Status last = absl::UnavailableError("no etcd endpoint");
  for (const std::string& endpoint : endpoints_) {
    auto host_port = HostPort(endpoint);
    if (!host_port.ok()) return host_port.status();
    httplib::Client client(host_port->first, host_port->second);
    SetTimeouts(client, timeout_);
    auto result = client.Post(path.c_str(), body, "application/json");
    if (!result) {
      last = absl::UnavailableError(
          absl::StrCat("etcd at ", endpoint, " ", path, ": ",
                       httplib::to_string(result.error())));
      continue;
    }
    if (result->status == 200) return result->body;
    // The gateway's errors: {"error": ..., "code": <grpc code>, "message"}.
    const Json error = Json::parse(result->body, nullptr, false);
    const int code = error.is_object() && error.contains("code") &&
                             error["code"].is_number_integer()
                         ? error["code"].get<int>()
                         : static_cast<int>(absl::StatusCode::kUnavailable);
    const std::string message = error.is_object() &&
                                        error.contains("message") &&
                                        error["message"].is_string()
                                    ? error["message"].get<std::string>()
                                    : result->body;
    last = absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("etcd at ", endpoint, " ", path, ": HTTP ",
                                     result->status, ": ", message));
    // Only a server that is unavailable is worth asking the next one.
    if (last.code() != absl::StatusCode::kUnavailable) return last;
  }
  return last;
}

absl::StatusOr<int64_t> EtcdGateway::GrantLease(int64_t ttl_s) const {
  auto reply = Call("/v3/lease/grant", Json{{"TTL", ttl_s}}.dump());
  if (!reply.ok()) return reply.status();
  const Json json = Json::parse(*reply, nullptr, false);
  const int64_t id = Int64Field(json, "ID");
  if (id == 0)
    return absl::UnavailableError(
        absl::StrCat("etcd granted no lease: ", *reply));
  return id;
}

absl::Status EtcdGateway::KeepAlive(int64_t lease) const {
  auto reply =
      Call("/v3/lease/keepalive", Json{{"ID", std::to_string(lease)}}.dump());
  if (!reply.ok()) return reply.status();
  const Json json = Json::parse(*reply, nullptr, false);
  if (!json.is_object() || !json.contains("result"))
    return absl::UnavailableError(
        absl::StrCat("etcd keepalive reply without a result: ", *reply));
  // An expired lease comes back without a TTL.
  if (Int64Field(json["result"], "TTL") <= 0)
    return absl::NotFoundError(absl::StrCat("lease ", lease, " expired"));
  return absl::OkStatus();
}

absl::Status EtcdGateway::RevokeLease(int64_t lease) const {
  auto reply =
      Call("/v3/lease/revoke", Json{{"ID", std::to_string(lease)}}.dump());
  return reply.status();
}

absl::Status EtcdGateway::Put(const std::string& key, const std::string& value,
                              int64_t lease) const {
  Json request{{"key", Base64(key)}, {"value", Base64(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  return Call("/v3/kv/put", request.dump()).status();
}

absl::StatusOr<EtcdRange> EtcdGateway::RangePrefix(
    const std::string& prefix) const {
  auto reply =
      Call("/v3/kv/range", Json{{"key", Base64(prefix)},
                                {"range_end", Base64(PrefixRangeEnd(prefix))}}
                               .dump());
  if (!reply.ok()) return reply.status();
  const Json json = Json::parse(*reply, nullptr, false);
  if (!json.is_object())
    return absl::UnavailableError("etcd range reply is not JSON");
  EtcdRange range;
  range.revision = Int64Field(json.value("header", Json::object()), "revision");
  if (json.contains("kvs") && json["kvs"].is_array())
    for (const Json& kv : json["kvs"])
      range.kvs.push_back(KeyValueFromJson(kv));
  return range;
}

absl::Status EtcdGateway::Delete(const std::string& key) const {
  return Call("/v3/kv/deleterange", Json{{"key", Base64(key)}}.dump()).status();
}

absl::Status EtcdGateway::Watch(
    const std::string& prefix, int64_t start_revision,
    const std::function<void(const EtcdWatchEvent&)>& on_event,
    WatchCancel& cancel) const {
  // An idle stream is opened again now and then from the next revision, so
  // that a connection that died silently is noticed.
  constexpr absl::Duration kIdle = absl::Seconds(30);
  int64_t next_revision = start_revision;
  size_t endpoint_index = 0;
  int failures = 0;
  while (!cancel.cancelled()) {
    auto host_port = HostPort(endpoints_[endpoint_index % endpoints_.size()]);
    if (!host_port.ok()) return host_port.status();
    httplib::Client client(host_port->first, host_port->second);
    SetTimeouts(client, timeout_);
    client.set_read_timeout(absl::ToInt64Seconds(kIdle), 0);
    httplib::Request request;
    request.method = "POST";
    request.path = "/v3/watch";
    request.set_header("Content-Type", "application/json");
    request.body = Json{{"create_request",
                         {{"key", Base64(prefix)},
                          {"range_end", Base64(PrefixRangeEnd(prefix))},
                          {"start_revision", std::to_string(next_revision)}}}}
                       .dump();
    std::string pending;
    bool received = false;
    bool compacted = false;
    request.content_receiver = [&](const char* data, size_t size, uint64_t,
                                   uint64_t) {
      received = true;
      pending.append(data, size);
      size_t newline;
      while ((newline = pending.find('\n')) != std::string::npos) {
        const Json message =
            Json::parse(pending.substr(0, newline), nullptr, false);
        pending.erase(0, newline + 1);
        if (!message.is_object() || !message.contains("result")) continue;
        const Json& result = message["result"];
        if (Int64Field(result, "compact_revision") > 0) {
          compacted = true;
          return false;
        }
        if (result.contains("events") && result["events"].is_array()) {
          for (const Json& event : result["events"]) {
            EtcdWatchEvent change;
            change.deleted = event.value("type", "") == "DELETE";
            change.kv = KeyValueFromJson(event.value("kv", Json::object()));
            next_revision = std::max(next_revision, change.kv.mod_revision + 1);
            on_event(change);
          }
        }
      }
      return true;
    };
    {
      absl::MutexLock lock(&cancel.mutex_);
      if (cancel.cancelled_) break;
      cancel.client_ = &client;
    }
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    client.send(request, response, error);
    {
      absl::MutexLock lock(&cancel.mutex_);
      cancel.client_ = nullptr;
    }
    if (compacted)
      return absl::OutOfRangeError("the watched revision was compacted");
    if (cancel.cancelled()) break;
    if (received || error == httplib::Error::Read) {
      failures = 0;  // idle or ended: watch again from the next revision
      continue;
    }
    ++endpoint_index;
    if (++failures >= static_cast<int>(endpoints_.size()))
      return absl::UnavailableError(
          absl::StrCat("etcd watch: ", httplib::to_string(error)));
  }
  return absl::OkStatus();
}

}  // namespace seqkv::cluster
