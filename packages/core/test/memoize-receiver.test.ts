import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { CacheConfigError, type CacheOptions, cache, cached } from '../src/index.js'
import { memoryBackend } from './installed-backends.js'

/*
 * `cached(fn)` keys a call by its arguments. A function that reads `this`, installed as a method
 * (`Repo.prototype.find = cached(function find(id) { … this … })`), would otherwise give one
 * object's result to another: such a call is refused, never answered from another receiver's entry.
 */
describe('cached() on a function that reads `this`', () => {
  it("never gives one tenant's invoice to another tenant's repository", async () => {
    const backend = memoryBackend()
    class TenantRepo {
      constructor(readonly tenant: string) {}
      declare findInvoice: (id: number) => Promise<{ tenant: string; id: number }>
    }
    TenantRepo.prototype.findInvoice = cached(
      async function findInvoice(this: TenantRepo, id: number) {
        return { tenant: this.tenant, id }
      },
      { backend, ttl: 60 },
    )
    const acme = new TenantRepo('acme')
    const globex = new TenantRepo('globex')
    const seen: unknown[] = []
    for (const repo of [acme, globex]) {
      try {
        seen.push(await repo.findInvoice(7))
      } catch (error) {
        expect(error).toBeInstanceOf(CacheConfigError)
        expect((error as Error).message).toMatch(/findInvoice\(\) reads `this`/)
        expect((error as Error).message).toMatch(/@cache\(\)/)
        seen.push('refused')
      }
    }
    expect(seen).toEqual(['refused', 'refused'])
    // An async function's refusal is a rejection, as its other failures are, never a throw.
    const call = acme.findInvoice(7)
    expect(call).toBeInstanceOf(Promise)
    await expect(call).rejects.toThrow(CacheConfigError)
  })

  it('takes a function compiled for a target before ES2017 by its arguments: `__awaiter(this, …)` is no read of `this`', async () => {
    // r70-a: tsc's output of `async function find(id)` at ES2016 passes `this` to its helper, and
    // `users.find(1)` through a module namespace was refused as reading `this`.
    const backend = memoryBackend()
    const awaiter = (thisArg: unknown, _args: unknown, _P: unknown, generator: Function) =>
      new Promise((resolve, reject) => {
        const steps = generator.call(thisArg) as Generator<unknown, unknown, unknown>
        const step = (result: IteratorResult<unknown>): void => {
          if (result.done) resolve(result.value)
          else Promise.resolve(result.value).then((value) => step(steps.next(value)), reject)
        }
        step(steps.next())
      })
    const compiled = new Function(
      '__awaiter',
      `return {
        find: function findCompiled(id) { return __awaiter(this, void 0, void 0, function* () { return 'user ' + id }) },
        mine: function mineCompiled(id) { return __awaiter(this, void 0, void 0, function* () { return this.tenant + '#' + id }) },
      }`,
    )(awaiter)
    const users = { find: cached(compiled.find, { backend, ttl: 60 }) }
    expect(await users.find(1)).toBe('user 1')
    // One whose body reads `this` is refused still.
    const repo = { tenant: 'acme', mine: cached(compiled.mine, { backend, ttl: 60 }) }
    await expect(Promise.resolve().then(() => repo.mine(1))).rejects.toThrow(/mineCompiled\(\) reads `this`/)
  })

  it("never answers Orders.findById with the users' row when one function is put on two classes", async () => {
    const backend = memoryBackend()
    const findById = cached(
      async function findById(this: object, id: number) {
        return `${(this.constructor as unknown as { table: string }).table}:${id}`
      },
      { backend, ttl: 60 },
    )
    class Users {
      static table = 'users'
      findById = findById
    }
    class Orders {
      static table = 'orders'
      findById = findById
    }
    const users = await new Users().findById(1).catch((error: Error) => error)
    const orders = await new Orders().findById(1).catch((error: Error) => error)
    expect(orders).not.toBe('users:1')
    expect(users).toBeInstanceOf(CacheConfigError)
    expect(orders).toBeInstanceOf(CacheConfigError)
  })

  it('refuses a sync function read on another object synchronously, and keyFor on an object alike', () => {
    const backend = memoryBackend()
    const rate = cached(
      function rate(this: { currency: string }, amount: number) {
        return `${amount} ${this.currency}`
      },
      { backend },
    )
    const eur = { currency: 'EUR', rate }
    const usd = { currency: 'USD', rate }
    expect(() => eur.rate(1)).toThrow(CacheConfigError)
    expect(() => usd.rate(1)).toThrow(CacheConfigError)
    expect(() => rate.keyFor.call(eur, 1)).toThrow(CacheConfigError)
    // A plain call has no receiver: keyed by its arguments, as before.
    expect(() => (rate as unknown as (amount: number) => string)(1)).toThrow(TypeError) // reads this.currency of undefined
  })

  it('still caches a function that does not read `this` when called on an object (a module namespace, a service object)', async () => {
    const backend = memoryBackend()
    let calls = 0
    async function findUser(id: number) {
      calls++
      return { id }
    }
    const arrow = async (id: number) => {
      calls++
      return { id }
    }
    const users = {
      find: cached(findUser, { backend }),
      findArrow: cached(arrow, { backend, name: 'arrowFind' }),
    }
    const namespaceLike = Object.freeze(Object.assign(Object.create(null), { find: users.find }))
    expect(await users.find(1)).toEqual({ id: 1 })
    expect(await namespaceLike.find(1)).toEqual({ id: 1 })
    expect(await users.findArrow(2)).toEqual({ id: 2 })
    expect(await users.findArrow(2)).toEqual({ id: 2 })
    expect(calls).toBe(2)
  })

  it('with a `key`, the key is the whole of what the result depends on: calls on every object share it', async () => {
    const backend = memoryBackend()
    let calls = 0
    const db = { row: async (id: number) => ({ id, n: ++calls }) }
    class Repo {
      db = db
      declare find: (id: number) => Promise<{ id: number; n: number }>
    }
    Repo.prototype.find = cached(
      async function find(this: Repo, id: number) {
        return this.db.row(id)
      },
      { backend, key: (id) => String(id) },
    )
    expect(await new Repo().find(3)).toEqual({ id: 3, n: 1 })
    expect(await new Repo().find(3)).toEqual({ id: 3, n: 1 })
  })
})

describe('which functions read `this`', () => {
  it('an arrow that names the `this` around it is keyed by its arguments on any object; a method shorthand that reads it is refused', async () => {
    const backend = memoryBackend()
    let calls = 0
    class Pricing {
      rate = 2
      price = cached(async (amount: number) => amount * this.rate + 0 * ++calls, {
        backend,
        name: 'pricing.price',
      })
    }
    const pricing = new Pricing()
    const holder = { price: pricing.price }
    expect(await holder.price(5)).toBe(10)
    expect(await pricing.price(5)).toBe(10)
    expect(calls).toBe(1)

    const service = {
      base: 'https://a.example',
      url: cached(
        function url(this: { base: string }, path: string) {
          return this.base + path
        },
        { backend },
      ),
      viaSuper: cached(
        {
          viaSuper(path: string): string {
            return super.toString() + path
          },
        }.viaSuper,
        { backend },
      ),
    }
    expect(() => service.url('/x')).toThrow(/url\(\) reads `this`/)
    expect(() => service.viaSuper('/x')).toThrow(/viaSuper\(\) reads `this`/)
  })
})

/** The legacy decorator form, as plain JavaScript applies it. */
function decorate(target: object, method: string, options: CacheOptions): void {
  const descriptor = Object.getOwnPropertyDescriptor(target, method)!
  Object.defineProperty(target, method, cache(options)(target, method, descriptor) ?? descriptor)
}

describe('@cache() applied by hand to objects no class tells apart', () => {
  it('refuses a call on objects made from a plain prototype: users never get orders', async () => {
    const backend = memoryBackend()
    const proto = {
      async find(this: { table: string }, id: number) {
        return { table: this.table, id }
      },
    }
    decorate(proto, 'find', { backend, ttl: 60 })
    const users = Object.assign(Object.create(proto), { table: 'users' })
    const orders = Object.assign(Object.create(proto), { table: 'orders' })
    // Before: orders.find(1) answered { table: 'users', id: 1 }.
    await expect(users.find(1)).rejects.toThrow(CacheConfigError)
    await expect(orders.find(1)).rejects.toThrow(/plain object|no class/)
  })

  it('refuses a decorated method borrowed onto object literals, or called on a null-prototype object', async () => {
    const backend = memoryBackend()
    class Repo {
      constructor(readonly table: string) {}
      async find(id: number) {
        return `${this.table}:${id}`
      }
    }
    decorate(Repo.prototype, 'find', { backend, ttl: 60 })
    expect(await new Repo('repos').find(1)).toBe('repos:1')
    const invoices = { table: 'invoices', find: Repo.prototype.find }
    const payments = { table: 'payments', find: Repo.prototype.find }
    // Before: payments.find(1) answered invoices:1.
    await expect(invoices.find(1)).rejects.toThrow(CacheConfigError)
    await expect(payments.find(1)).rejects.toThrow(CacheConfigError)
    const bare = Object.assign(Object.create(null), { table: 'bare' })
    // Before: keyed as a Repo, answered repos:1.
    await expect(Repo.prototype.find.call(bare, 1)).rejects.toThrow(CacheConfigError)
  })

  it('with a key, the caller says the result is the arguments alone: accepted', async () => {
    const backend = memoryBackend()
    const proto = {
      async find(id: number) {
        return { id }
      },
    }
    decorate(proto, 'find', { backend, ttl: 60, key: (id: number) => `find:${id}` } as never)
    const one = Object.create(proto)
    expect(await one.find(1)).toEqual({ id: 1 })
  })
})

describe('cached() on functions whose text does not show that they read `this`', () => {
  it('refuses a Proxy over a bound function whose apply trap passes the receiver on', async () => {
    const backend = memoryBackend()
    async function find(this: { tenant: string }, id: number) {
      return `${this.tenant}:${id}`
    }
    const proxied = new Proxy(find.bind(undefined as never), {
      apply: (_target, self, args: [number]) => find.apply(self, args),
    })
    const memo = cached(proxied, { name: 'proxiedFind', backend, ttl: 60 })
    const acme = { tenant: 'acme', find: memo }
    const globex = { tenant: 'globex', find: memo }
    // Before: globex.find(7) answered acme:7.
    await expect(acme.find(7)).rejects.toThrow(CacheConfigError)
    await expect(globex.find(7)).rejects.toThrow(CacheConfigError)
  })

  it('refuses a function whose text spells a word with a \\u escape (a direct eval of this)', async () => {
    const backend = memoryBackend()
    const find = new Function('id', 'return ev\\u0061l("th" + "is.tenant") + ":" + id') as (
      id: number,
    ) => string
    const memo = cached(find, { name: 'escapedFind', backend, ttl: 60 })
    const acme = { tenant: 'acme', find: memo }
    expect(() => acme.find(7)).toThrow(CacheConfigError)
  })
})

describe('@cache() on receivers no class of their own names', () => {
  it('refuses a primitive receiver: one string never gets another string’s result', async () => {
    const backend = memoryBackend()
    const holder = {
      async invoice(this: string, id: number) {
        return `${this}:invoice:${id}`
      },
    }
    decorate(holder, 'invoice', { backend, ttl: 60 })
    const invoice = holder.invoice as (this: unknown, id: number) => Promise<string>
    // Before: 'globex' got acme:invoice:7.
    await expect(invoice.call('acme', 7)).rejects.toThrow(CacheConfigError)
    await expect(invoice.call('globex', 7)).rejects.toThrow(CacheConfigError)
    await expect(invoice.call(5, 7)).rejects.toThrow(CacheConfigError)
  })

  it('refuses an object whose class is inherited from further up its prototype chain', async () => {
    const backend = memoryBackend()
    const rows: Record<string, Record<number, string>> = {
      users: { 1: 'user row 1' },
      orders: { 1: 'order row 1' },
    }
    class Repo {
      table() {
        return 'users'
      }
      async findById(id: number) {
        return rows[this.table()]![id]
      }
    }
    decorate(Repo.prototype, 'findById', { backend, ttl: 60 })
    expect(await new Repo().findById(1)).toBe('user row 1')
    // An ES5 subclass that did not reset `constructor`: its objects say they are Repos.
    function OrderRepo() {}
    OrderRepo.prototype = Object.create(Repo.prototype)
    OrderRepo.prototype.table = () => 'orders'
    const orders = new (OrderRepo as unknown as new () => Repo)()
    // Before: user row 1.
    await expect(orders.findById(1)).rejects.toThrow(CacheConfigError)
    await expect(Object.create(new Repo()).findById(1)).rejects.toThrow(CacheConfigError)
  })

  it("refuses an instance of a class given a mixin's `constructor` (the TypeScript handbook's applyMixins), saying so", async () => {
    const backend = memoryBackend()
    class Findable {
      table = 'findable'
      async find(id: number) {
        return `${this.table}:${id}`
      }
    }
    decorate(Findable.prototype, 'find', { backend, ttl: 60, name: 'mix.find' })
    class Users {
      table = 'users'
      declare find: (id: number) => Promise<string>
    }
    // The handbook's helper copies every own name, `constructor` included.
    for (const name of Object.getOwnPropertyNames(Findable.prototype))
      Object.defineProperty(Users.prototype, name, Object.getOwnPropertyDescriptor(Findable.prototype, name)!)
    await expect(new Users().find(1)).rejects.toThrow(
      /`constructor` was replaced, as a mixin helper that copies `constructor` does/,
    )
  })
})

describe('@cache() run by a class that did not get the decorator', () => {
  it('a named method copied onto another class (a mixin), or called on its instance, keys that class apart', async () => {
    const backend = memoryBackend()
    class Users {
      table = 'users'
      async find(id: number) {
        return `${this.table}#${id}`
      }
    }
    decorate(Users.prototype, 'find', { backend, ttl: 60, name: 'repo.find' })
    class Orders {
      table = 'orders'
      declare find: (id: number) => Promise<string>
    }
    // applyMixins: the descriptor copied onto the other class.
    Object.defineProperty(Orders.prototype, 'find', Object.getOwnPropertyDescriptor(Users.prototype, 'find')!)
    expect(await new Users().find(1)).toBe('users#1')
    // Before: users#1 both times.
    expect(await new Orders().find(1)).toBe('orders#1')
    class Payments {
      table = 'payments'
    }
    expect(await (Users.prototype.find as (id: number) => Promise<string>).call(new Payments(), 1)).toBe(
      'payments#1',
    )
  })

  it('refuses a chain with a prototype whose constructor is not its own class', async () => {
    const backend = memoryBackend()
    class Repo {
      declare table: string
      async find(id: number) {
        return `${this.table}:${id}`
      }
    }
    decorate(Repo.prototype, 'find', { backend, ttl: 60 })
    // An ES5 intermediate class whose prototype says it is Repo's: its text (the table) was left
    // out of the key, and two services' Stores shared one entry across processes.
    function Table(this: { table: string }) {
      this.table = 'users'
    }
    Table.prototype = Object.create(Repo.prototype, { constructor: { value: Repo } })
    class Store extends (Table as unknown as typeof Repo) {}
    await expect(new Store().find(1)).rejects.toThrow(/constructor. is not its own class/)
  })

  it('refuses a plain object from another realm (a vm context, a Jest sandbox)', async () => {
    const backend = memoryBackend()
    class Repo {
      async invoice(this: { tenant: string }, id: number) {
        return `${this.tenant}:invoice${id}`
      }
    }
    decorate(Repo.prototype, 'invoice', { backend, ttl: 60 })
    const context = vm.createContext({})
    const acme = vm.runInContext('({ tenant: "acme" })', context)
    // Before: accepted, and globex got acme's invoice.
    await expect(Repo.prototype.invoice.call(acme, 7)).rejects.toThrow(CacheConfigError)
  })
})
