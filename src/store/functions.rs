//! The scripts built on `lua/lib.lua`, sent as Redis functions.
//!
//! Every such script is also one function of a single library: `lib.lua`
//! and every prelude once, then each script's file as the body of a
//! function of (KEYS, ARGV). The library is loaded once per Redis server
//! (`FUNCTION LOAD REPLACE`, which a cluster client sends to every master)
//! and each call is an `FCALL`: the preludes are not run again on every
//! call, and what a library keeps between calls (see load_meta) stays.
//! Its name carries a hash of its text, so processes of two versions of
//! ticketctl each find their own.
//!
//! Redis before 7.0 has no functions, and an ACL may forbid them: the first
//! call answered "unknown command" or NOPERM turns the process to
//! `EVALSHA` of the same script (its preludes, then `begin(KEYS)`, then its
//! file), which behaves alike call by call.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisError, RedisResult, Script, ToRedisArgs};

/// `lib.lua` and the preludes, in the order scripts combine them.
pub(super) const LIB: &str = include_str!("lua/lib.lua");
pub(super) const PRELUDES: [&str; 3] = [
    include_str!("lua/settings.lua"),
    include_str!("lua/orders.lua"),
    include_str!("lua/queue.lua"),
];

/// The line that ends what a script's function may make once, at load
/// (its state's declarations and its functions): sent as a script, the
/// whole file runs on every call, in the same order.
const PER_CALL: &str = "\n-- per call:\n";

/// One script: its function in the library, and the same script for EVALSHA.
pub struct Lua {
    function: String,
    eval: Script,
}

/// The library of every script (see the module's text).
struct Library {
    name: String,
    source: String,
}

static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    // `register` comes first: lib.lua then makes `redis` a local of its own.
    let mut body = String::from(
        "local function register(name, f)\n  redis.register_function(LIB .. '_' .. name, f)\nend\n",
    );
    body.push_str(LIB);
    for p in PRELUDES {
        body.push_str(p);
    }
    for (file, text) in super::scripts::LIBRARY_SCRIPTS {
        let stem = file.trim_end_matches(".lua");
        // What a script has before its `-- per call:` line is made once
        // here, in a block of its own; the rest is its function's body.
        // KEYS and ARGV are the block's, set by each call, so that what is
        // made once finds them as a script does.
        let (once, per_call) = text.split_once(PER_CALL).unwrap_or(("", text));
        let _ = write!(
            body,
            "do\nlocal KEYS, ARGV\n{once}\nregister('{stem}', function(keys, argv)\nKEYS, ARGV = keys, argv\nbegin(KEYS)\n{per_call}\nend)\nend\n"
        );
    }
    let name = format!("ticketctl_{}", &Script::new(&body).get_hash()[..12]);
    Library {
        source: format!("#!lua name={name}\nlocal LIB = '{name}'\n{body}"),
        name,
    }
});

/// Set once functions are found unusable here: every call is then an
/// EVALSHA.
static EVAL_ONLY: AtomicBool = AtomicBool::new(false);

impl Lua {
    /// The script of `file`, whose text for EVALSHA is `eval_text` (its
    /// preludes, `begin(KEYS)`, its file).
    pub(super) fn new(file: &str, eval_text: &str) -> Self {
        Lua {
            function: format!("{}_{}", LIBRARY.name, file.trim_end_matches(".lua")),
            eval: Script::new(eval_text),
        }
    }

    /// A call to be given its keys and arguments.
    pub(super) fn prepare_invoke(&self) -> Call<'_> {
        Call {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a script, as `redis::ScriptInvocation` for scripts.
pub(super) struct Call<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    /// Adds `KEYS[i]`.
    pub(super) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds `ARGV[i]`.
    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Runs the call: FCALL, loading the library first when this Redis
    /// does not have it; EVALSHA where functions cannot be used.
    pub(super) async fn invoke_async<T: FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        if EVAL_ONLY.load(Ordering::Relaxed) {
            return self.eval(con).await;
        }
        let mut fcall = redis::cmd("FCALL");
        fcall.arg(&self.lua.function).arg(self.keys.len());
        for k in &self.keys {
            fcall.arg(k);
        }
        for a in &self.args {
            fcall.arg(a);
        }
        match fcall.query_async(con).await {
            Err(e) if not_loaded(&e) => match load(con).await {
                Ok(()) => fcall.query_async(con).await,
                Err(e) if unusable(&e) => self.eval_from_now(con, &e).await,
                Err(e) => Err(e),
            },
            Err(e) if unusable(&e) => self.eval_from_now(con, &e).await,
            r => r,
        }
    }

    async fn eval_from_now<T: FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
        why: &RedisError,
    ) -> RedisResult<T> {
        if !EVAL_ONLY.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "Redis functions cannot be used here; scripts are sent with EVALSHA");
        }
        self.eval(con).await
    }

    async fn eval<T: FromRedisValue>(&self, con: &mut impl ConnectionLike) -> RedisResult<T> {
        let mut inv = self.lua.eval.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        for a in &self.args {
            inv.arg(a);
        }
        inv.invoke_async(con).await
    }
}

/// Loads (or reloads) the library on the server (every master of a
/// cluster).
async fn load(con: &mut impl ConnectionLike) -> RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.source)
        .query_async::<redis::Value>(con)
        .await
        .map(|_| ())
}

fn detail(e: &RedisError) -> &str {
    e.detail().unwrap_or_default()
}

/// The server has no such function: it restarted, failed over to a node
/// that never had the library, or was flushed.
fn not_loaded(e: &RedisError) -> bool {
    e.code() == Some("ERR") && detail(e).starts_with("Function not found")
}

/// Functions cannot be used: Redis before 7.0, or an ACL without them.
fn unusable(e: &RedisError) -> bool {
    e.code() == Some("NOPERM")
        || (e.code() == Some("ERR") && detail(e).starts_with("unknown command"))
}

/// The library's text (for tools that drive the scripts straight, such as
/// the benchmarks).
pub fn library_source() -> &'static str {
    &LIBRARY.source
}
