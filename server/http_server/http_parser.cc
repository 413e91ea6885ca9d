#include "server/http_server/http_parser.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace alibi::http_server {
namespace {

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// A header field value byte: VCHAR, obs-text, SP or HTAB.
bool IsFieldValueChar(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u == '\t' || u >= 0x20 ? u != 0x7F : false;
}

// Longest chunk-size or trailer line accepted.
constexpr size_t kMaxChunkLine = 1024;

}  // namespace

const std::string* HttpRequest::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

int HttpRequest::HeaderCount(absl::string_view name) const {
  int count = 0;
  for (const auto& [n, v] : headers) count += n == name;
  return count;
}

bool HttpRequest::WantsClose() const {
  bool close = version_minor == 0;
  for (const auto& [n, v] : headers) {
    if (n != "connection") continue;
    for (absl::string_view option : absl::StrSplit(v, ',')) {
      option = absl::StripAsciiWhitespace(option);
      if (absl::EqualsIgnoreCase(option, "close")) return true;
      if (absl::EqualsIgnoreCase(option, "keep-alive")) close = false;
    }
  }
  return close;
}

void HttpParser::Fail(int status, std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_message_ = std::move(message);
}

size_t HttpParser::Feed(absl::string_view data) {
  size_t used = 0;
  while (used < data.size() && state_ != State::kDone &&
         state_ != State::kError) {
    const absl::string_view rest = data.substr(used);
    if (state_ == State::kIdle) {
      // Empty lines before a request line are ignored (RFC 9112 2.2).
      if (rest.front() == '\r' || rest.front() == '\n') {
        ++used;
        continue;
      }
      state_ = State::kHeaders;
    }
    if (state_ == State::kHeaders) {
      used += FeedHeaders(rest);
    } else if (state_ == State::kBody) {
      used += FeedBody(rest);
    }
  }
  // A request without a body is complete as soon as its headers are.
  if (state_ == State::kBody && !chunked_ && body_remaining_ == 0) {
    state_ = State::kDone;
  }
  return used;
}

size_t HttpParser::FeedHeaders(absl::string_view data) {
  // The header section ends with an empty line: "\n\r\n" or "\n\n" (a bare LF
  // is accepted as a line terminator, RFC 9112 2.2).
  const size_t old_size = head_.size();
  const size_t scan_from = old_size >= 2 ? old_size - 2 : 0;
  head_.append(data.data(), data.size());
  size_t end = std::string::npos;
  size_t terminator = 0;
  for (size_t i = std::max<size_t>(scan_from, 1); i < head_.size(); ++i) {
    if (head_[i] != '\n') continue;
    if (head_[i - 1] == '\n') {
      end = i - 1;
      terminator = 1;
      break;
    }
    if (i >= 2 && head_[i - 1] == '\r' && head_[i - 2] == '\n') {
      end = i - 2;
      terminator = 2;
      break;
    }
  }
  if (end == std::string::npos) {
    if (head_.size() > limits_.max_header_bytes) {
      Fail(431, absl::StrCat("the request header section exceeds ",
                             limits_.max_header_bytes, " bytes"));
    }
    return data.size();
  }
  if (end > limits_.max_header_bytes) {
    Fail(431, absl::StrCat("the request header section exceeds ",
                           limits_.max_header_bytes, " bytes"));
    return data.size();
  }
  // Bytes of `data` that belong to the header section.
  const size_t section_end = end + 1 + terminator;  // after the empty line
  const size_t consumed = section_end - old_size;
  head_.resize(end + 1);  // keep the last field's LF
  ParseHead();
  head_.clear();
  return consumed;
}

void HttpParser::ParseHead() {
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(head_, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
  }
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return Fail(400, "empty request");

  // Request line: method SP request-target SP HTTP-version.
  const std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3) {
    return Fail(400, "malformed request line");
  }
  if (!IsToken(parts[0])) return Fail(400, "malformed method");
  const absl::string_view target = parts[1];
  if (target.empty() ||
      !std::all_of(target.begin(), target.end(), [](char c) {
        const unsigned char u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7F;
      })) {
    return Fail(400, "malformed request target");
  }
  const absl::string_view version = parts[2];
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") ||
      !absl::ascii_isdigit(version[5]) || version[6] != '.' ||
      !absl::ascii_isdigit(version[7])) {
    return Fail(400, "malformed HTTP version");
  }
  if (version[5] != '1') {
    return Fail(505, absl::StrCat(version, " is not supported (HTTP/1.1)"));
  }
  request_.method = std::string(parts[0]);
  request_.target = std::string(target);
  request_.version_minor = version[7] - '0';

  absl::string_view path = target;
  if (target.front() != '/' && target != "*") {
    // absolute-form: scheme "://" authority path.
    const size_t scheme = target.find("://");
    if (scheme == absl::string_view::npos ||
        !(absl::StartsWithIgnoreCase(target, "http://") ||
          absl::StartsWithIgnoreCase(target, "https://"))) {
      return Fail(400, "malformed request target");
    }
    const size_t slash = target.find('/', scheme + 3);
    path = slash == absl::string_view::npos ? "/" : target.substr(slash);
  }
  const size_t question = path.find('?');
  request_.path = std::string(path.substr(0, question));
  request_.query = question == absl::string_view::npos
                       ? ""
                       : std::string(path.substr(question + 1));

  for (size_t i = 1; i < lines.size(); ++i) {
    const absl::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      return Fail(400, "obsolete line folding in the header section");
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      return Fail(400, "malformed header field (no colon)");
    }
    const absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) {
      return Fail(400, "malformed header field name");
    }
    const absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), IsFieldValueChar)) {
      return Fail(400, absl::StrCat("header field ", name,
                                    ": control character in the value"));
    }
    request_.headers.emplace_back(absl::AsciiStrToLower(name),
                                  std::string(value));
  }

  if (request_.version_minor >= 1 && request_.HeaderCount("host") != 1) {
    return Fail(400, "an HTTP/1.1 request needs exactly one Host header");
  }

  // Body framing.
  bool has_length = false;
  uint64_t length = 0;
  bool has_te = false;
  for (const auto& [name, value] : request_.headers) {
    if (name == "content-length") {
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = absl::StripAsciiWhitespace(item);
        uint64_t v = 0;
        if (item.empty() || item.size() > 19 ||
            !std::all_of(item.begin(), item.end(),
                         [](char c) { return absl::ascii_isdigit(c); }) ||
            !absl::SimpleAtoi(item, &v)) {
          return Fail(400, "malformed Content-Length");
        }
        if (has_length && v != length) {
          return Fail(400, "conflicting Content-Length values");
        }
        has_length = true;
        length = v;
      }
    } else if (name == "transfer-encoding") {
      has_te = true;
      std::vector<absl::string_view> codings = absl::StrSplit(value, ',');
      for (absl::string_view& coding : codings) {
        coding = absl::StripAsciiWhitespace(coding);
      }
      if (codings.size() != 1 || !absl::EqualsIgnoreCase(codings[0], "chunked")) {
        return Fail(501, absl::StrCat("transfer coding \"", value,
                                      "\" is not supported (chunked only)"));
      }
      if (chunked_) return Fail(400, "chunked applied twice");
      chunked_ = true;
    } else if (name == "expect") {
      if (!absl::EqualsIgnoreCase(value, "100-continue")) {
        return Fail(417, absl::StrCat("expectation \"", value,
                                      "\" is not supported"));
      }
      expects_continue_ = true;
    }
  }
  if (has_te && has_length) {
    return Fail(400, "both Content-Length and Transfer-Encoding");
  }
  if (has_te && request_.version_minor == 0) {
    return Fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  if (has_length && length > limits_.max_body_bytes) {
    return Fail(413, absl::StrCat("the request body (", length,
                                  " bytes) exceeds ", limits_.max_body_bytes,
                                  " bytes"));
  }
  body_remaining_ = has_length ? length : 0;
  if (!chunked_ && body_remaining_ == 0) expects_continue_ = false;
  if (body_remaining_ > 0) request_.body.reserve(body_remaining_);
  state_ = State::kBody;
}

size_t HttpParser::FeedBody(absl::string_view data) {
  if (chunked_) return FeedChunked(data);
  const size_t n = static_cast<size_t>(
      std::min<uint64_t>(body_remaining_, data.size()));
  request_.body.append(data.data(), n);
  body_remaining_ -= n;
  if (body_remaining_ == 0) state_ = State::kDone;
  return n;
}

size_t HttpParser::FeedChunked(absl::string_view data) {
  size_t used = 0;
  while (used < data.size() && state_ == State::kBody) {
    switch (chunk_state_) {
      case ChunkState::kSize:
      case ChunkState::kTrailers: {
        const size_t lf = data.find('\n', used);
        const size_t take =
            (lf == absl::string_view::npos ? data.size() : lf + 1) - used;
        chunk_line_.append(data.data() + used, take);
        used += take;
        if (chunk_line_.size() > kMaxChunkLine) {
          Fail(400, "chunk line too long");
          return used;
        }
        if (lf == absl::string_view::npos) break;
        absl::string_view line(chunk_line_);
        line.remove_suffix(1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (chunk_state_ == ChunkState::kTrailers) {
          if (line.empty()) {
            state_ = State::kDone;
          }
          chunk_line_.clear();
          break;
        }
        const absl::string_view size_text =
            absl::StripAsciiWhitespace(line.substr(0, line.find(';')));
        uint64_t size = 0;
        if (size_text.empty() || size_text.size() > 15 ||
            !std::all_of(size_text.begin(), size_text.end(),
                         [](char c) { return absl::ascii_isxdigit(c); }) ||
            !absl::SimpleHexAtoi(size_text, &size)) {
          Fail(400, "malformed chunk size");
          return used;
        }
        chunk_line_.clear();
        if (size == 0) {
          chunk_state_ = ChunkState::kTrailers;
        } else {
          if (request_.body.size() + size > limits_.max_body_bytes) {
            Fail(413, absl::StrCat("the request body exceeds ",
                                   limits_.max_body_bytes, " bytes"));
            return used;
          }
          chunk_remaining_ = size;
          chunk_state_ = ChunkState::kData;
        }
        break;
      }
      case ChunkState::kData: {
        const size_t n = static_cast<size_t>(
            std::min<uint64_t>(chunk_remaining_, data.size() - used));
        request_.body.append(data.data() + used, n);
        used += n;
        chunk_remaining_ -= n;
        if (chunk_remaining_ == 0) chunk_state_ = ChunkState::kDataCrlf;
        break;
      }
      case ChunkState::kDataCrlf: {
        // CRLF (or a bare LF) after the chunk data.
        const char c = data[used++];
        if (c == '\r' && !chunk_cr_) {
          chunk_cr_ = true;
          break;
        }
        chunk_cr_ = false;
        if (c != '\n') {
          Fail(400, "malformed chunk (no CRLF after the data)");
          return used;
        }
        chunk_state_ = ChunkState::kSize;
        break;
      }
    }
  }
  return used;
}

HttpRequest HttpParser::TakeRequest() {
  HttpRequest request = std::move(request_);
  request_ = HttpRequest();
  state_ = State::kIdle;
  head_.clear();
  chunked_ = false;
  body_remaining_ = 0;
  chunk_state_ = ChunkState::kSize;
  chunk_line_.clear();
  chunk_remaining_ = 0;
  chunk_cr_ = false;
  expects_continue_ = false;
  return request;
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

}  // namespace alibi::http_server
