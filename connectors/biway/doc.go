// Package biway is passerelle's connector to Bi-way/Api (Pocket Communication), the partner that
// sends SMS and RCS messages (see CONTRACTS.md, "Bi-way/Api").
//
// It holds the wire types, the [Client] with one method per call of the partner's guide
// (partner account: RegisterCallback, CreateCompany, CreateAccount; user account: CreateAgent,
// CreateRCSTester, CreateTemplate, ChatbotToken, Submit, Broadcast, Conversation), and the
// callback side: [DecodeCallback], the message [State] order with [Advance], and
// [NewCallbackHandler], the POST /webhooks/biway endpoint that verifies the Standard Webhooks
// signature before handing a callback to its [CallbackAcceptor]. The fake partner for tests
// and the sandbox is the biwaysim sub-package.
//
// Every failed call returns an *httpclient.Error (Connector "biway") classified by the shared
// outcome table; a partner error body {"error": true, "message", "code"} is carried as an
// [*APIError]. A number that is not a French mobile in E.164 form, once normalised, never
// leaves: the call is refused locally with a permanent error. The client retries a little
// within a call (RetryMax 2); long retries belong to the delivery engine above it. Message calls
// are safe to retry (the partner keeps the first answer to a reference); the creation calls
// (company, account, agent, tester, template) carry no such key, so a retry after a lost answer
// may create a second entity: they are one-off set-up steps an operator checks.
//
// Only the paths of the guide are the partner's; the bodies are our design and may differ from
// the real service: the base URL is configurable, and the wire types are the place to adapt.
package biway
