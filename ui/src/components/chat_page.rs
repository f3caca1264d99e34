//! The chat page: the list of chats on the left, the open conversation on the right (one at a
//! time on a phone).
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{
    chat_list::ChatList, connection_banner::ConnectionBanner, conversation::Conversation, new_chat::NewChat, AppContext,
};
use crate::state::{Action, Screen};

#[function_component(ChatPage)]
pub fn chat_page() -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let state = &ctx.state;

    // Looking at a chat with unread messages marks them read, here and on every other device.
    {
        let target = state.selected.and_then(|chat_id| state.unread_up_to(chat_id).map(|up_to| (chat_id, up_to)));
        let ctx = ctx.clone();
        use_effect_with(target, move |target| {
            if let Some((chat_id, up_to)) = *target {
                if page_visible() {
                    ctx.backend.mark_read(chat_id, up_to);
                    ctx.state.dispatch(Action::MarkedRead { chat_id, up_to });
                }
            }
        });
    }

    let logout = {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let ctx = ctx.clone();
            spawn_local(async move {
                let _ = ctx.backend.logout().await;
                ctx.state.dispatch(Action::LoggedOut { notice: Some("You are logged out.".into()) });
            });
        })
    };
    let settings = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Settings)))
    };
    let me = state.me.clone();
    let title = state.instance.as_ref().map_or("Parley".to_string(), |i| i.name.clone());
    html! {
        <div class={classes!("chat-page", state.selected.is_some().then_some("has-selection"))}>
            <header class="top-bar">
                <span class="brand">{ title }</span>
                <span class="me" title={me.as_ref().map(|u| u.email.clone())}>{ me.as_ref().map(|u| u.display_name.clone()).unwrap_or_default() }</span>
                <button type="button" id="open-settings" class="logout" onclick={settings}>{ "Settings" }</button>
                <button type="button" id="logout" class="logout" onclick={logout}>{ "Log out" }</button>
            </header>
            <ConnectionBanner />
            <div class="panes">
                <nav class="sidebar" aria-label="Chats">
                    <NewChat />
                    <ChatList />
                </nav>
                <Conversation />
            </div>
        </div>
    }
}

fn page_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
}
