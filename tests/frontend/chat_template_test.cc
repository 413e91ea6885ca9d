// Chat templates: the Jinja2 subset renders the templates ALiBi chat models
// ship (MPT's ChatML, BLOOMChat-style plain turns) exactly as transformers'
// apply_chat_template does (trim_blocks, lstrip_blocks), the constructs
// other popular templates use, and refuses what it cannot run safely.
#include "server/frontend/chat_template.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alibi::frontend {
namespace {

using ::testing::HasSubstr;

std::string Render(const std::string& source,
                   const std::vector<ChatMessage>& messages,
                   bool add_generation_prompt = true,
                   const std::string& bos = "<s>",
                   const std::string& eos = "</s>") {
  auto t = ChatTemplate::Create(source, bos, eos);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return "";
  auto out = (*t)->Render(messages, add_generation_prompt);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

std::string RenderError(const std::string& source,
                        const std::vector<ChatMessage>& messages) {
  auto t = ChatTemplate::Create(source);
  if (!t.ok()) return std::string(t.status().message());
  auto out = (*t)->Render(messages, true);
  EXPECT_FALSE(out.ok());
  return std::string(out.status().message());
}

std::string FixtureModel(const std::string& name) {
  return std::string(ALIBI_TEST_DATA_DIR) + "/models/" + name;
}

TEST(ChatTemplateTest, MptChatMlTemplateOfTheFixture) {
  auto t = LoadChatTemplate(FixtureModel("tiny-mpt"), "");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_NE(*t, nullptr);
  const std::string kSystem =
      "A conversation between a user and an LLM-based AI assistant. The "
      "assistant gives helpful and honest answers.";
  // No system message: the template's default one.
  auto one = (*t)->Render({{"user", "Hello!"}}, true);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, "<|im_start|>system\n" + kSystem +
                      "\n<|im_start|>user\nHello!<|im_end|>\n"
                      "<|im_start|>assistant\n");
  // A system message of the client's, stripped; a whole conversation.
  auto many = (*t)->Render({{"system", "  Be brief.\n"},
                            {"user", "Hi"},
                            {"assistant", "Hello."},
                            {"user", "Bye"}},
                           false);
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_EQ(*many,
            "<|im_start|>system\nBe brief.\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>");
}

TEST(ChatTemplateTest, ModelsWithoutATemplateHaveNone) {
  auto t = LoadChatTemplate(FixtureModel("tiny-bloom"), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, nullptr);
}

TEST(ChatTemplateTest, PlainTurnTemplateWithEosToken) {
  // BLOOMChat's turn format.
  const std::string source =
      "{% for message in messages %}{% if message['role'] == 'user' %}"
      "{{ '<human>: ' + message['content'] + '\\n' }}"
      "{% elif message['role'] == 'assistant' %}"
      "{{ '<bot>: ' + message['content'] + eos_token + '\\n' }}"
      "{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<bot>:' }}{% endif %}";
  EXPECT_EQ(
      Render(source, {{"user", "2+2?"}, {"assistant", "4"}, {"user", "3+3?"}}),
      "<human>: 2+2?\n<bot>: 4</s>\n<human>: 3+3?\n<bot>:");
  EXPECT_EQ(Render(source, {{"user", "2+2?"}}, false), "<human>: 2+2?\n");
}

TEST(ChatTemplateTest, TrimBlocksAndLstripBlocksAsTransformersSetsThem) {
  // A template written over several lines: a block tag's own newline goes,
  // and the indentation before a block tag goes; expressions keep theirs.
  const std::string source =
      "{% for message in messages %}\n"
      "    {% if message.role == 'user' %}\n"
      "User: {{ message.content }}\n"
      "    {% else %}\n"
      "  Bot: {{ message.content }}\n"
      "    {% endif %}\n"
      "{% endfor %}\n"
      "{#- a comment -#}\n"
      "{%- if add_generation_prompt %}Bot:{% endif %}";
  EXPECT_EQ(Render(source, {{"user", "a"}, {"assistant", "b"}}),
            "User: a\n  Bot: b\nBot:");
}

TEST(ChatTemplateTest, LlamaStyleTemplateWithSlicesModuloAndRaise) {
  const std::string source =
      "{% if messages[0]['role'] == 'system' %}"
      "{% set loop_messages = messages[1:] %}"
      "{% set system_message = messages[0]['content'] %}"
      "{% else %}{% set loop_messages = messages %}"
      "{% set system_message = false %}{% endif %}"
      "{% for message in loop_messages %}"
      "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate "
      "user/assistant/user/assistant/...') }}{% endif %}"
      "{% if loop.index0 == 0 and system_message != false %}"
      "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
      "message['content'] %}{% else %}{% set content = message['content'] %}"
      "{% endif %}"
      "{% if message['role'] == 'user' %}"
      "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
      "{% elif message['role'] == 'assistant' %}"
      "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  EXPECT_EQ(Render(source, {{"system", "Be nice."},
                            {"user", "Hi "},
                            {"assistant", "Hello"},
                            {"user", "Bye"}}),
            "<s>[INST] <<SYS>>\nBe nice.\n<</SYS>>\n\nHi [/INST] Hello </s>"
            "<s>[INST] Bye [/INST]");
  EXPECT_THAT(RenderError(source, {{"user", "a"}, {"user", "b"}}),
              HasSubstr("Conversation roles must alternate"));
}

TEST(ChatTemplateTest, ExpressionsFiltersTestsAndNamespaces) {
  // A loop filter: loop.index counts the kept items.
  EXPECT_EQ(Render("{% for m in messages if m.role == 'user' %}"
                   "{{ m.content }}{{ loop.index }}{% endfor %}",
                   {{"user", "a"}, {"assistant", "b"}, {"user", "c"}}),
            "a1c2");
  EXPECT_EQ(
      Render("{% set ns = namespace(n=0) %}"
             "{% for m in messages %}{% set ns.n = ns.n + m.content|length %}"
             "{% endfor %}{{ ns.n }} {{ messages|length }} "
             "{{ messages[-1].content|upper }} {{ messages[0].missing is "
             "defined }} {{ 'x' if messages|length > 1 else 'y' }} "
             "{{ [1, 2, 3]|join('-') }} {{ 7 // 2 }} {{ -7 % 3 }} "
             "{{ 'a,b'.split(',')|last }} {{ 'Ab'.startswith('A') }} "
             "{{ none is none }} {{ loop is undefined }} {{ 3 is odd }} "
             "{{ {'k': 'v'}.k ~ 1 }} {{ messages[0]|tojson }} "
             "{{ range(3)|list|length }} {{ 'abc'[1:] }}",
             {{"user", "hello"}, {"assistant", "hi"}}),
      "7 2 HI False x 1-2-3 3 2 b True True True True v1 "
      "{\"role\": \"user\", \"content\": \"hello\"} 3 bc");
}

TEST(ChatTemplateTest, LoopVariablesAndElse) {
  EXPECT_EQ(Render("{% for m in messages %}{{ loop.index }}/{{ loop.length }}"
                   "{{ ',' if not loop.last }}{% else %}empty{% endfor %}",
                   {{"user", "a"}, {"user", "b"}, {"user", "c"}}),
            "1/3,2/3,3/3");
  EXPECT_EQ(Render("{% for m in messages %}x{% else %}empty{% endfor %}", {}),
            "empty");
}

TEST(ChatTemplateTest, UnsupportedOrBrokenTemplatesAreRefusedWithTheirLine) {
  EXPECT_THAT(RenderError("ok\n{% macro f() %}{% endmacro %}", {}),
              HasSubstr("line 2: unsupported or unexpected tag \"macro\""));
  EXPECT_THAT(RenderError("{% if true %}no end", {}),
              HasSubstr("missing {% endif %}"));
  EXPECT_THAT(RenderError("{{ 'unterminated }}", {}), HasSubstr("unclosed"));
  EXPECT_THAT(RenderError("{{ messages|shuffle }}", {}),
              HasSubstr("unsupported filter \"shuffle\""));
  EXPECT_THAT(RenderError("{{ messages.__class__.__init__() }}", {}),
              HasSubstr("unsupported method"));
  EXPECT_THAT(RenderError("{{ 1 + 'a' }}", {}),
              HasSubstr("unsupported operands"));
}

TEST(ChatTemplateTest, EvaluationIsBounded) {
  EXPECT_THAT(RenderError("{% for i in range(1000000) %}{% endfor %}", {}),
              HasSubstr("range too long"));
  EXPECT_THAT(
      RenderError("{% for a in range(100000) %}{% for b in range(100000) %}"
                  "{% endfor %}{% endfor %}",
                  {}),
      HasSubstr("evaluation limit"));
  std::vector<ChatMessage> big(64, {"user", std::string(1 << 20, 'x')});
  EXPECT_THAT(
      RenderError("{% for m in messages %}{{ m.content }}{% endfor %}", big),
      HasSubstr("too long"));
}

TEST(ChatTemplateTest, LoadsFromConfigListsFilesAndText) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("chat-template-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": {"content": "<B>", "lstrip": false},
               "eos_token": "<E>",
               "chat_template": [
                 {"name": "tool_use", "template": "tools"},
                 {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]})";
    std::ofstream(dir / "override.jinja") << "file:{{ messages[0].content }}";
  }
  auto from_config = LoadChatTemplate(dir.string(), "");
  ASSERT_TRUE(from_config.ok()) << from_config.status();
  EXPECT_EQ(*(*from_config)->Render({{"user", "x"}}, true), "<B>x<E>");
  auto from_file =
      LoadChatTemplate(dir.string(), (dir / "override.jinja").string());
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(*(*from_file)->Render({{"user", "x"}}, true), "file:x");
  auto from_text = LoadChatTemplate(dir.string(), "text:{{ messages|length }}");
  ASSERT_TRUE(from_text.ok()) << from_text.status();
  EXPECT_EQ(*(*from_text)->Render({{"user", "x"}}, true), "text:1");
  auto missing = LoadChatTemplate(dir.string(), (dir / "nope.jinja").string());
  EXPECT_THAT(missing.status().message(), HasSubstr("cannot read"));
  std::ofstream(dir / "tokenizer_config.json")
      << "{\"chat_template\": \"{% if %}\"}";
  EXPECT_THAT(LoadChatTemplate(dir.string(), "").status().message(),
              HasSubstr("tokenizer_config.json: chat template, line 1"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace alibi::frontend
