//! Where a message is written: Enter sends, Shift+Enter starts a new line.
use yew::prelude::*;

use super::AppContext;
use crate::state::{now_ms, Action, Pending};

/// Typing notices go out at most this often.
const TYPING_EVERY_MS: f64 = 2000.0;

#[derive(Properties, PartialEq)]
pub struct ComposerProps {
    pub chat_id: i64,
}

#[function_component(Composer)]
pub fn composer(props: &ComposerProps) -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let text = use_state(String::new);
    let last_typing = use_mut_ref(|| 0.0f64);
    let chat_id = props.chat_id;

    let send = {
        let (ctx, text) = (ctx.clone(), text.clone());
        Callback::from(move |_: ()| {
            let body = (*text).clone();
            if body.trim().is_empty() {
                return;
            }
            let client_id = ctx.backend.send(chat_id, body.clone());
            ctx.state.dispatch(Action::Queued(Pending { client_id, chat_id, body, failed: None }));
            text.set(String::new());
        })
    };
    let onkeydown = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                send.emit(());
            }
        })
    };
    let oninput = {
        let (ctx, text) = (ctx.clone(), text.clone());
        Callback::from(move |e: InputEvent| {
            text.set(e.target_unchecked_into::<web_sys::HtmlTextAreaElement>().value());
            let now = now_ms();
            if now - *last_typing.borrow() > TYPING_EVERY_MS {
                *last_typing.borrow_mut() = now;
                ctx.backend.typing(chat_id);
            }
        })
    };
    let onsubmit = {
        let send = send.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            send.emit(());
        })
    };
    html! {
        <form class="composer" {onsubmit}>
            <label for="composer-text" class="visually-hidden">{ "Message" }</label>
            <textarea id="composer-text" name="message" rows="1" placeholder="Write a message…"
                value={(*text).clone()} {oninput} {onkeydown} maxlength="4096"></textarea>
            <button type="submit" id="composer-send" class="primary" aria-label="Send" disabled={text.trim().is_empty()}>{ "Send" }</button>
        </form>
    }
}
